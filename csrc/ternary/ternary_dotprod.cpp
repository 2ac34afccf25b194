// Ternary/binary matmul, aarch64 with the dot-product extension: the tiles of
// ternary_neon_tiles.h with one sdot per 16 products (u <= 2 is a valid signed byte).
#include "ternary/ternary_neon_tiles.h"

namespace lowbit {
namespace {

struct DotSdot {
  static int32x4_t dot(int32x4_t acc, uint8x16_t u, int8x16_t x) { return vdotq_s32(acc, vreinterpretq_s8_u8(u), x); }
};

}  // namespace

const TernaryKernels ternary_dotprod = make_ternary_kernels<DotSdot>(14);

}  // namespace lowbit
