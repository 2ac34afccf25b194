// int8 GEMM micro-kernels, aarch64 with the int8 matrix-multiply extension (ARMv8.6
// i8mm: Neoverse V1/V2/N2, Cortex-A510/A710 and later, Apple M2 and later).
//
// smmla multiplies a 2x8 block of A by an 8x2 block of B into a 2x2 int32 block: 32
// multiply-adds per instruction, twice sdot's. The u7 layout needs no repacking: for
// two consecutive groups of four inputs, zip1/zip2 of their 32-bit lanes give
// (channel c: inputs 0-7, channel c + 1: inputs 0-7), smmla's right operand; the left
// operand is two rows' 8 inputs (two 8-byte loads). A tile of six rows is three row
// pairs x eight channel pairs = 24 accumulators, + 3 row-pair vectors + 4 weight
// vectors = 31 registers; per 8 inputs: 8 loads + 8 zips feed 24 smmla (768 MACs).
// An odd last group of four inputs is read as 4 bytes (never past the row's end),
// its missing half zero. u in [0, 127] is a valid signed byte, so smmla (signed x
// signed) is exact here, like sdot.
#include "int8/int8_neon_tiles.h"

namespace lowbit {
namespace {

inline int8x16_t load_pair8(const int8_t* r0, const int8_t* r1) { return vcombine_s8(vld1_s8(r0), vld1_s8(r1)); }
inline int8x16_t load_pair4(const int8_t* r0, const int8_t* r1) {
  int32_t x0, x1;
  std::memcpy(&x0, r0, 4);
  std::memcpy(&x1, r1, 4);
  return vreinterpretq_s8_s32(vcombine_s32(vcreate_s32(static_cast<uint32_t>(x0)), vcreate_s32(static_cast<uint32_t>(x1))));
}

template <int MR>
void tile_u7_mmla_mr(const int8_t* a, size_t lda, const uint8_t* panel, size_t kquads, int32_t* c) {
  constexpr int P = (MR + 1) / 2;  // row pairs; an odd last row is paired with itself
  const int8_t* rows[2 * P];
  for (int r = 0; r < 2 * P; ++r) rows[r] = a + static_cast<size_t>(r < MR ? r : MR - 1) * lda;
  int32x4_t acc[P][8];
  for (int q = 0; q < P; ++q)
    for (int j = 0; j < 8; ++j) acc[q][j] = vdupq_n_s32(0);
  const int8_t* p = reinterpret_cast<const int8_t*>(panel);
  size_t kq = 0;
  for (; kq + 2 <= kquads; kq += 2) {
    int8x16_t av[P];
    for (int q = 0; q < P; ++q) av[q] = load_pair8(rows[2 * q] + 4 * kq, rows[2 * q + 1] + 4 * kq);
    for (int g = 0; g < 4; ++g) {
      int32x4_t lo = vreinterpretq_s32_s8(vld1q_s8(p + 64 * kq + 16 * g));
      int32x4_t hi = vreinterpretq_s32_s8(vld1q_s8(p + 64 * (kq + 1) + 16 * g));
      int8x16_t z0 = vreinterpretq_s8_s32(vzip1q_s32(lo, hi));  // channels 4g, 4g + 1
      int8x16_t z1 = vreinterpretq_s8_s32(vzip2q_s32(lo, hi));  // channels 4g + 2, 4g + 3
      for (int q = 0; q < P; ++q) {
        acc[q][2 * g] = vmmlaq_s32(acc[q][2 * g], av[q], z0);
        acc[q][2 * g + 1] = vmmlaq_s32(acc[q][2 * g + 1], av[q], z1);
      }
    }
  }
  if (kq < kquads) {  // the last group of four: its partner inputs are zero
    int8x16_t av[P];
    for (int q = 0; q < P; ++q) av[q] = load_pair4(rows[2 * q] + 4 * kq, rows[2 * q + 1] + 4 * kq);
    const int32x4_t zero = vdupq_n_s32(0);
    for (int g = 0; g < 4; ++g) {
      int32x4_t lo = vreinterpretq_s32_s8(vld1q_s8(p + 64 * kq + 16 * g));
      int8x16_t z0 = vreinterpretq_s8_s32(vzip1q_s32(lo, zero));
      int8x16_t z1 = vreinterpretq_s8_s32(vzip2q_s32(lo, zero));
      for (int q = 0; q < P; ++q) {
        acc[q][2 * g] = vmmlaq_s32(acc[q][2 * g], av[q], z0);
        acc[q][2 * g + 1] = vmmlaq_s32(acc[q][2 * g + 1], av[q], z1);
      }
    }
  }
  // acc[q][2g] = (row 2q: channels 4g, 4g+1 | row 2q+1: the same); [2g+1]: channels 4g+2, 4g+3
  for (int q = 0; q < P; ++q)
    for (int g = 0; g < 4; ++g) {
      vst1q_s32(c + (2 * q) * kInt8NR + 4 * g, vcombine_s32(vget_low_s32(acc[q][2 * g]), vget_low_s32(acc[q][2 * g + 1])));
      if (2 * q + 1 < MR)
        vst1q_s32(c + (2 * q + 1) * kInt8NR + 4 * g,
                  vcombine_s32(vget_high_s32(acc[q][2 * g]), vget_high_s32(acc[q][2 * g + 1])));
    }
}

void tile_u7_mmla(const void* av, size_t lda, int mr, const uint8_t* panel, size_t kquads, int32_t* c) {
  const int8_t* a = static_cast<const int8_t*>(av);
  switch (mr) {
    case 1: return tile_u7_dot(av, lda, 1, panel, kquads, c);  // one row: sdot wastes nothing
    case 2: return tile_u7_mmla_mr<2>(a, lda, panel, kquads, c);
    case 3: return tile_u7_mmla_mr<3>(a, lda, panel, kquads, c);
    case 4: return tile_u7_mmla_mr<4>(a, lda, panel, kquads, c);
    case 5: return tile_u7_mmla_mr<5>(a, lda, panel, kquads, c);
    default: return tile_u7_mmla_mr<6>(a, lda, panel, kquads, c);
  }
}

}  // namespace

const Int8Kernels int8_i8mm = {{kLayoutI16, tile_i16}, {kLayoutU7, tile_u7_mmla},
                               int8_epilogue<kInt8NR>, int8_rowsum};

}  // namespace lowbit
