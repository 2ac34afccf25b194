// Ternary/binary matmul, aarch64 with the int8 matrix-multiply extension. The register
// tiles (small M) are the dotprod variant's sdot tiles; the decoded-panel tile (large M)
// uses smmla: 2 activation rows x 8 inputs times 2 decoded weight rows x 8 inputs into a
// 2x2 int32 block, 32 multiply-adds per instruction (sdot: 16). zip1/zip2 of the 64-bit
// halves of two rows' 16 inputs give smmla's operands; a tile of up to 6 activation rows
// x 4 weight rows is 3 x 2 accumulators, 10 zips per 12 smmla (384 multiply-adds).
// An odd row count repeats the last row (its results are not stored).
#include "ternary/ternary_neon_tiles.h"

namespace lowbit {
namespace {

struct DotSdot {
  static int32x4_t dot(int32x4_t acc, uint8x16_t u, int8x16_t x) { return vdotq_s32(acc, vreinterpretq_s8_u8(u), x); }
};

template <int P, int Q>  // P activation-row pairs, Q weight-row pairs
void mmla_tile(const int8_t* const* xr, const uint8_t* const* ur, size_t len, int32x4_t (&a)[3][2]) {
  for (int p = 0; p < P; ++p)
    for (int q = 0; q < Q; ++q) a[p][q] = vdupq_n_s32(0);
  for (size_t k = 0; k < len; k += 16) {
    int8x16_t u0[Q], u1[Q];
    for (int q = 0; q < Q; ++q) {
      int64x2_t e = vreinterpretq_s64_u8(vld1q_u8(ur[2 * q] + k)), f = vreinterpretq_s64_u8(vld1q_u8(ur[2 * q + 1] + k));
      u0[q] = vreinterpretq_s8_s64(vzip1q_s64(e, f));
      u1[q] = vreinterpretq_s8_s64(vzip2q_s64(e, f));
    }
    for (int p = 0; p < P; ++p) {
      int64x2_t e = vreinterpretq_s64_s8(vld1q_s8(xr[2 * p] + k)), f = vreinterpretq_s64_s8(vld1q_s8(xr[2 * p + 1] + k));
      int8x16_t x0 = vreinterpretq_s8_s64(vzip1q_s64(e, f)), x1 = vreinterpretq_s8_s64(vzip2q_s64(e, f));
      for (int q = 0; q < Q; ++q) {
        a[p][q] = vmmlaq_s32(a[p][q], x0, u0[q]);
        a[p][q] = vmmlaq_s32(a[p][q], x1, u1[q]);
      }
    }
  }
}

// acc[i * ldacc + j] += U for activation rows i < mr and weight rows j < nr of this tile.
template <int P, int Q>
void mmla_block(const int8_t* x, size_t ldx, int mr, const uint8_t* wb, size_t nr, size_t len, int32_t* acc,
                size_t ldacc) {
  const int8_t* xr[6];
  const uint8_t* ur[4];
  for (int i = 0; i < 2 * P; ++i) xr[i] = x + static_cast<size_t>(i < mr ? i : mr - 1) * ldx;
  for (int j = 0; j < 2 * Q; ++j) ur[j] = wb + static_cast<size_t>(j < static_cast<int>(nr) ? j : nr - 1) * kDecChunk;
  int32x4_t a[3][2];
  mmla_tile<P, Q>(xr, ur, len, a);
  for (int p = 0; p < P; ++p)
    for (int q = 0; q < Q; ++q) {
      int32_t v[4];
      vst1q_s32(v, a[p][q]);  // (2p, 2q), (2p, 2q + 1), (2p + 1, 2q), (2p + 1, 2q + 1)
      for (int s = 0; s < 4; ++s) {
        int i = 2 * p + (s >> 1), j = 2 * q + (s & 1);
        if (i < mr && j < static_cast<int>(nr)) acc[i * ldacc + j] += v[s];
      }
    }
}

template <int P>
void mmla_rows(const int8_t* x, size_t ldx, int mr, const uint8_t* wb, size_t nr, size_t len, int32_t* acc,
               size_t ldacc) {
  size_t j = 0;
  for (; j + 4 <= nr; j += 4) mmla_block<P, 2>(x, ldx, mr, wb + j * kDecChunk, 4, len, acc + j, ldacc);
  if (j < nr) {
    if (nr - j > 2) mmla_block<P, 2>(x, ldx, mr, wb + j * kDecChunk, nr - j, len, acc + j, ldacc);
    else mmla_block<P, 1>(x, ldx, mr, wb + j * kDecChunk, nr - j, len, acc + j, ldacc);
  }
}

void dec_tile_mmla(const int8_t* x, size_t ldx, int mr, const uint8_t* wb, size_t nr, size_t len, void* acc_,
                   size_t ldacc) {
  int32_t* acc = static_cast<int32_t*>(acc_);
  switch ((mr + 1) / 2) {
    case 1: return mmla_rows<1>(x, ldx, mr, wb, nr, len, acc, ldacc);
    case 2: return mmla_rows<2>(x, ldx, mr, wb, nr, len, acc, ldacc);
    default: return mmla_rows<3>(x, ldx, mr, wb, nr, len, acc, ldacc);
  }
}

constexpr TernaryKernels make_i8mm() {
  TernaryKernels k = make_ternary_kernels<DotSdot>(14);
  k.dec_max_rows = 6;
  k.dec_tile = dec_tile_mmla;
  return k;
}

}  // namespace

const TernaryKernels ternary_i8mm = make_i8mm();

}  // namespace lowbit
