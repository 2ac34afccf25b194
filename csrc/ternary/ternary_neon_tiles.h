// Ternary/binary matmul tiles shared by the aarch64 variants (ternary_neon.cpp,
// ternary_dotprod.cpp include it with their own Dot policy and flags).
//
// A weight block (32 bytes) gives 8 / bits planes of 32 codes u by a shift and a mask
// (two 16-byte vectors per plane), each lined up with 32 consecutive activations; the
// tiles multiply u (unsigned, <= 2, a valid signed byte) by the int8 activations with
// the variant's Dot: 16 products added into the 4 int32 lanes of an accumulator (which
// lane a product lands in does not matter: a tile's output is the sum of all lanes).
//  - Dot = sdot (dotprod): one instruction per 16 products.
//  - Dot = smull + smlal + sadalp (neon): |u * x| <= 256, two products per int16 lane,
//    then pairs into int32.
// Register tiles: reg_1x4 keeps 4 weight rows' blocks in 8 registers and runs one
// activation row past them plane by plane; reg_rows decodes one weight row's block
// once for up to 6 activation rows. Decoded panels (large M): decode writes u as bytes,
// dec_tile is an MR x NR (<= 4 x 4) register tile over them with int32 accumulators.
#pragma once
#include <arm_neon.h>

#include "ternary/ternary.h"
#include "ternary/ternary_ops.h"

namespace lowbit {
namespace {

constexpr size_t kDecChunk = 2048;

int32_t sum_s8(const int8_t* q, size_t n) {
  int32x4_t acc = vdupq_n_s32(0);
  size_t k = 0;
  for (; k + 16 <= n; k += 16) acc = vpadalq_s16(acc, vpaddlq_s8(vld1q_s8(q + k)));
  int32_t total = vaddvq_s32(acc);
  for (; k < n; ++k) total += q[k];
  return total;
}

// Plane p of a block (lo = bytes 0-15, hi = 16-31): the codes u of activations 32p + 0..15 / 16..31.
template <int kBits>
inline uint8x16_t plane(uint8x16_t w, int p) {
  constexpr unsigned kMask = (1u << kBits) - 1;
  const int s = kBits * p;
  uint8x16_t v = s == 0 ? w : vshlq_u8(w, vdupq_n_s8(static_cast<int8_t>(-s)));
  return (s + kBits == 8) ? v : vandq_u8(v, vdupq_n_u8(kMask));
}

template <class Dot, int kBits>
void reg_1x4_b(const int8_t* x, const uint8_t* w, size_t ldw, size_t nrows, size_t nblocks, int32_t* U) {
  constexpr int kPlanes = 8 / kBits;
  for (size_t j = 0; j < nrows; j += 4) {
    int32x4_t acc[4] = {vdupq_n_s32(0), vdupq_n_s32(0), vdupq_n_s32(0), vdupq_n_s32(0)};
    const uint8_t* wr = w + j * ldw;
    for (size_t b = 0; b < nblocks; ++b) {
      uint8x16_t lo[4], hi[4];
      for (int r = 0; r < 4; ++r) {
        lo[r] = vld1q_u8(wr + r * ldw + 32 * b);
        hi[r] = vld1q_u8(wr + r * ldw + 32 * b + 16);
      }
      const int8_t* xb = x + b * 32 * kPlanes;
      for (int p = 0; p < kPlanes; ++p) {
        int8x16_t x0 = vld1q_s8(xb + 32 * p), x1 = vld1q_s8(xb + 32 * p + 16);
        for (int r = 0; r < 4; ++r) {
          acc[r] = Dot::dot(acc[r], plane<kBits>(lo[r], p), x0);
          acc[r] = Dot::dot(acc[r], plane<kBits>(hi[r], p), x1);
        }
      }
    }
    for (int r = 0; r < 4; ++r) U[j + r] = vaddvq_s32(acc[r]);
  }
}

template <class Dot>
void reg_1x4(int bits, const int8_t* x, const uint8_t* w, size_t ldw, size_t nrows, size_t nblocks, int32_t* U) {
  if (bits == 2) reg_1x4_b<Dot, 2>(x, w, ldw, nrows, nblocks, U);
  else reg_1x4_b<Dot, 1>(x, w, ldw, nrows, nblocks, U);
}

template <class Dot, int kBits, int MR>
void reg_rows_b(const int8_t* x, size_t ldx, const uint8_t* w, size_t ldw, size_t nrows, size_t nblocks,
                int32_t* U, size_t ldu) {
  constexpr int kPlanes = 8 / kBits;
  for (size_t j = 0; j < nrows; ++j) {
    int32x4_t acc[MR];
    for (int i = 0; i < MR; ++i) acc[i] = vdupq_n_s32(0);
    const uint8_t* wr = w + j * ldw;
    for (size_t b = 0; b < nblocks; ++b) {
      const uint8x16_t lo = vld1q_u8(wr + 32 * b), hi = vld1q_u8(wr + 32 * b + 16);
      for (int p = 0; p < kPlanes; ++p) {
        const uint8x16_t u0 = plane<kBits>(lo, p), u1 = plane<kBits>(hi, p);
        const size_t k = b * 32 * kPlanes + 32 * p;
        for (int i = 0; i < MR; ++i) {
          acc[i] = Dot::dot(acc[i], u0, vld1q_s8(x + i * ldx + k));
          acc[i] = Dot::dot(acc[i], u1, vld1q_s8(x + i * ldx + k + 16));
        }
      }
    }
    for (int i = 0; i < MR; ++i) U[i * ldu + j] = vaddvq_s32(acc[i]);
  }
}

template <class Dot, int kBits>
void reg_rows_bits(const int8_t* x, size_t ldx, int mr, const uint8_t* w, size_t ldw, size_t nrows, size_t nblocks,
                   int32_t* U, size_t ldu) {
  switch (mr) {
    case 1: return reg_rows_b<Dot, kBits, 1>(x, ldx, w, ldw, nrows, nblocks, U, ldu);
    case 2: return reg_rows_b<Dot, kBits, 2>(x, ldx, w, ldw, nrows, nblocks, U, ldu);
    case 3: return reg_rows_b<Dot, kBits, 3>(x, ldx, w, ldw, nrows, nblocks, U, ldu);
    case 4: return reg_rows_b<Dot, kBits, 4>(x, ldx, w, ldw, nrows, nblocks, U, ldu);
    case 5: return reg_rows_b<Dot, kBits, 5>(x, ldx, w, ldw, nrows, nblocks, U, ldu);
    default: return reg_rows_b<Dot, kBits, 6>(x, ldx, w, ldw, nrows, nblocks, U, ldu);
  }
}

template <class Dot>
void reg_rows(int bits, const int8_t* x, size_t ldx, int mr, const uint8_t* w, size_t ldw, size_t nrows,
              size_t nblocks, int32_t* U, size_t ldu) {
  if (bits == 2) reg_rows_bits<Dot, 2>(x, ldx, mr, w, ldw, nrows, nblocks, U, ldu);
  else reg_rows_bits<Dot, 1>(x, ldx, mr, w, ldw, nrows, nblocks, U, ldu);
}

template <int kBits>
void decode_b(const uint8_t* w, size_t ldw, size_t rows, size_t nblocks, uint8_t* wb) {
  constexpr int kPlanes = 8 / kBits;
  for (size_t r = 0; r < rows; ++r)
    for (size_t b = 0; b < nblocks; ++b) {
      const uint8x16_t lo = vld1q_u8(w + r * ldw + 32 * b), hi = vld1q_u8(w + r * ldw + 32 * b + 16);
      uint8_t* o = wb + r * kDecChunk + b * 32 * kPlanes;
      for (int p = 0; p < kPlanes; ++p) {
        vst1q_u8(o + 32 * p, plane<kBits>(lo, p));
        vst1q_u8(o + 32 * p + 16, plane<kBits>(hi, p));
      }
    }
}

void decode(int bits, const uint8_t* w, size_t ldw, size_t rows, size_t nblocks, uint8_t* wb) {
  if (bits == 2) decode_b<2>(w, ldw, rows, nblocks, wb);
  else decode_b<1>(w, ldw, rows, nblocks, wb);
}

// MR x NR tile over decoded rows; acc int32, added to.
template <class Dot, int MR, int NR>
void dec_mn(const int8_t* x, size_t ldx, const uint8_t* wb, size_t len, int32_t* acc, size_t ldacc) {
  int32x4_t a[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) a[i][j] = vdupq_n_s32(0);
  for (size_t k = 0; k < len; k += 16) {
    uint8x16_t u[NR];
    for (int j = 0; j < NR; ++j) u[j] = vld1q_u8(wb + j * kDecChunk + k);
    for (int i = 0; i < MR; ++i) {
      const int8x16_t xv = vld1q_s8(x + i * ldx + k);
      for (int j = 0; j < NR; ++j) a[i][j] = Dot::dot(a[i][j], u[j], xv);
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i * ldacc + j] += vaddvq_s32(a[i][j]);
}

template <class Dot, int MR>
void dec_rows(const int8_t* x, size_t ldx, const uint8_t* wb, size_t nr, size_t len, int32_t* acc, size_t ldacc) {
  size_t j = 0;
  for (; j + 4 <= nr; j += 4) dec_mn<Dot, MR, 4>(x, ldx, wb + j * kDecChunk, len, acc + j, ldacc);
  switch (nr - j) {
    case 1: dec_mn<Dot, MR, 1>(x, ldx, wb + j * kDecChunk, len, acc + j, ldacc); break;
    case 2: dec_mn<Dot, MR, 2>(x, ldx, wb + j * kDecChunk, len, acc + j, ldacc); break;
    case 3: dec_mn<Dot, MR, 3>(x, ldx, wb + j * kDecChunk, len, acc + j, ldacc); break;
    default: break;
  }
}

template <class Dot>
void dec_tile(const int8_t* x, size_t ldx, int mr, const uint8_t* wb, size_t nr, size_t len, void* acc_,
              size_t ldacc) {
  int32_t* acc = static_cast<int32_t*>(acc_);
  switch (mr) {
    case 1: return dec_rows<Dot, 1>(x, ldx, wb, nr, len, acc, ldacc);
    case 2: return dec_rows<Dot, 2>(x, ldx, wb, nr, len, acc, ldacc);
    case 3: return dec_rows<Dot, 3>(x, ldx, wb, nr, len, acc, ldacc);
    default: return dec_rows<Dot, 4>(x, ldx, wb, nr, len, acc, ldacc);
  }
}

void dec_reduce(const void* acc, size_t n, int32_t* U) {
  const int32_t* a = static_cast<const int32_t*>(acc);
  for (size_t r = 0; r < n; ++r) U[r] = a[r];
}

// y = float(acc) * (gw / sx) (+ bias): one division and one product per output, as tl_out_one.
void epilogue(const int32_t* acc, size_t N, float sx, const float* gw, size_t gw_stride, const float* bias,
              float* y) {
  const float32x4_t vsx = vdupq_n_f32(sx);
  size_t n = 0;
  if (gw_stride == 0 || gw_stride == 1) {
    for (; n + 4 <= N; n += 4) {
      float32x4_t g = gw_stride ? vld1q_f32(gw + n) : vdupq_n_f32(gw[0]);
      float32x4_t v = vmulq_f32(vcvtq_f32_s32(vld1q_s32(acc + n)), vdivq_f32(g, vsx));
      vst1q_f32(y + n, bias ? vaddq_f32(v, vld1q_f32(bias + n)) : v);
    }
  }
  for (; n < N; ++n) {
    float v = tl_out_one(acc[n], gw[n * gw_stride], sx);
    y[n] = bias ? v + bias[n] : v;
  }
}

template <class Dot>
constexpr TernaryKernels make_ternary_kernels(int dec_min_rows) {
  return TernaryKernels{/*reg_max_rows=*/6, /*reg_k_blocks=*/1, /*dec_max_rows=*/4, /*dec_chunk=*/kDecChunk,
                        /*dec_acc_bytes=*/sizeof(int32_t), /*dec_min_rows=*/static_cast<size_t>(dec_min_rows),
                        sum_s8, reg_1x4<Dot>, reg_rows<Dot>, decode, dec_tile<Dot>, dec_reduce, epilogue};
}

}  // namespace
}  // namespace lowbit
