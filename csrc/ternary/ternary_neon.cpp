// Ternary/binary matmul, aarch64 Advanced SIMD variant (no dot product): the tiles of
// ternary_neon_tiles.h with 16 products by smull + smlal (int16: |u * x| <= 256, two
// per lane) and sadalp into int32 pairs.
#include "ternary/ternary_neon_tiles.h"

namespace lowbit {
namespace {

struct DotNeon {
  static int32x4_t dot(int32x4_t acc, uint8x16_t u, int8x16_t x) {
    const int8x16_t s = vreinterpretq_s8_u8(u);
    int16x8_t p = vmull_s8(vget_low_s8(s), vget_low_s8(x));
    p = vmlal_high_s8(p, s, x);
    return vpadalq_s16(acc, p);
  }
};

}  // namespace

const TernaryKernels ternary_neon = make_ternary_kernels<DotNeon>(14);

}  // namespace lowbit
