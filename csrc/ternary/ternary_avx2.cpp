// AVX2 variant of the ternary family (see ternary.h for the packed layout).
//
// Micro-kernel: an MR x NR tile of outputs. Per 32-byte weight block, each of
// the 8/bits planes is one shift + mask giving 32 unsigned codes u, which meet
// 32 activations of each of the MR rows in vpmaddubsw (u8 x s8 -> s16 pair
// sums, never saturating since u <= 2). Products accumulate in 16 bits for 64
// vpmaddubsw results (|sum| <= 64 * 512 = 32768, representable as -32768 at
// worst and 32512 at best), then widen to int32 with vpmaddwd. Activation row
// pointers are shared by the NR weight rows, weight vectors by the MR rows.
#include <immintrin.h>

#include "ternary/ternary.h"
#include "ternary/ternary_ops.h"

namespace lowbit {
namespace {

inline int32_t hsum_epi32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}

int32_t sum_s8(const int8_t* q, size_t n) {
  const __m256i one8 = _mm256_set1_epi8(1), one16 = _mm256_set1_epi16(1);
  __m256i acc = _mm256_setzero_si256();
  size_t k = 0;
  for (; k + 32 <= n; k += 32) {
    __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + k));
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(one8, v), one16));
  }
  int32_t total = hsum_epi32(acc);
  for (; k < n; ++k) total += q[k];
  return total;
}

// Keeps v in a register at this point: stops the compiler from re-associating
// the accumulation chains into trees of temporaries (which spill).
inline void pin(__m256i& v) { __asm__("" : "+x"(v)); }

// S[i][j] = sum_k u[n_j, k] * q[m_i, k] over nblocks blocks.
template <int BITS, int MR, int NR>
inline void tile(const int8_t* const* xr, const uint8_t* const* wr, size_t nblocks, int32_t (*S)[4]) {
  constexpr int P = 8 / BITS;           // planes per block
  constexpr size_t FLUSH = 64 / P;      // blocks per 16-bit accumulation run
  const __m256i mask = _mm256_set1_epi8(static_cast<char>((1 << BITS) - 1));
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i acc32[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc32[i][j] = _mm256_setzero_si256();
  for (size_t b0 = 0; b0 < nblocks; b0 += FLUSH) {
    const size_t b1 = b0 + FLUSH < nblocks ? b0 + FLUSH : nblocks;
    __m256i acc[MR][NR];
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j) acc[i][j] = _mm256_setzero_si256();
    for (size_t b = b0; b < b1; ++b) {
      __m256i v[NR];
      for (int j = 0; j < NR; ++j) v[j] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wr[j] + 32 * b));
      const size_t xo = b * 32 * P;
#pragma GCC unroll 8
      for (int p = 0; p < P; ++p) {
        __m256i u[NR];
        for (int j = 0; j < NR; ++j)
          u[j] = _mm256_and_si256(p == 0 ? v[j] : _mm256_srli_epi16(v[j], BITS * p), mask);
        for (int i = 0; i < MR; ++i) {
          __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xr[i] + xo + 32 * p));
          if (NR > 1) pin(xv);  // one load shared by the NR products
          for (int j = 0; j < NR; ++j) {
            acc[i][j] = _mm256_add_epi16(acc[i][j], _mm256_maddubs_epi16(u[j], xv));
            pin(acc[i][j]);
          }
        }
      }
    }
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j) acc32[i][j] = _mm256_add_epi32(acc32[i][j], _mm256_madd_epi16(acc[i][j], ones));
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) S[i][j] = hsum_epi32(acc32[i][j]);
}

// All n in [n0, n1) for MR rows starting at xr[0..MR): panels of NR, tail of 1.
template <int BITS, int MR, int NR>
inline void rows(const int8_t* q, size_t ldq, const int32_t* qsum, const uint8_t* w, size_t ldw, size_t nblocks,
                 size_t n0, size_t n1, int32_t* acc, size_t ldc) {
  const int8_t* xr[MR];
  for (int i = 0; i < MR; ++i) xr[i] = q + i * ldq;
  int32_t S[MR][4];
  size_t n = n0;
  for (; n + NR <= n1; n += NR) {
    const uint8_t* wr[NR];
    for (int j = 0; j < NR; ++j) wr[j] = w + (n + j) * ldw;
    tile<BITS, MR, NR>(xr, wr, nblocks, S);
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j) acc[i * ldc + (n + j - n0)] = (BITS == 2 ? S[i][j] : 2 * S[i][j]) - qsum[i];
  }
  for (; n < n1; ++n) {
    const uint8_t* wr[1] = {w + n * ldw};
    tile<BITS, MR, 1>(xr, wr, nblocks, S);
    for (int i = 0; i < MR; ++i) acc[i * ldc + (n - n0)] = (BITS == 2 ? S[i][0] : 2 * S[i][0]) - qsum[i];
  }
}

template <int BITS>
void gemm_bits(const int8_t* q, size_t M, size_t ldq, const int32_t* qsum, const uint8_t* w, size_t ldw,
               size_t nblocks, size_t n0, size_t n1, int32_t* acc, size_t ldc) {
  // Outer blocks of 64 weight rows (64 * ldw bytes stay in L2) swept by every
  // 4-row activation tile (4 * ldq bytes stay in L1).
  constexpr size_t NB = 64;
  for (size_t nb = n0; nb < n1; nb += NB) {
    const size_t ne = nb + NB < n1 ? nb + NB : n1;
    size_t m = 0;
    int32_t* a = acc + (nb - n0);
    for (; m + 4 <= M; m += 4)
      rows<BITS, 4, 2>(q + m * ldq, ldq, qsum + m, w, ldw, nblocks, nb, ne, a + m * ldc, ldc);
    switch (M - m) {
      case 3: rows<BITS, 3, 2>(q + m * ldq, ldq, qsum + m, w, ldw, nblocks, nb, ne, a + m * ldc, ldc); break;
      case 2: rows<BITS, 2, 4>(q + m * ldq, ldq, qsum + m, w, ldw, nblocks, nb, ne, a + m * ldc, ldc); break;
      case 1: rows<BITS, 1, 4>(q + m * ldq, ldq, qsum + m, w, ldw, nblocks, nb, ne, a + m * ldc, ldc); break;
      default: break;
    }
  }
}

void gemm(int bits, const int8_t* q, size_t M, size_t ldq, const int32_t* qsum, const uint8_t* w, size_t ldw,
          size_t nblocks, size_t n0, size_t n1, int32_t* acc, size_t ldc) {
  if (bits == 2) gemm_bits<2>(q, M, ldq, qsum, w, ldw, nblocks, n0, n1, acc, ldc);
  else gemm_bits<1>(q, M, ldq, qsum, w, ldw, nblocks, n0, n1, acc, ldc);
}

void epilogue(const int32_t* acc, size_t N, float sx, const float* gw, size_t gw_stride, const float* bias,
              float* y) {
  const __m256 vsx = _mm256_set1_ps(sx);
  size_t n = 0;
  if (gw_stride == 0) {
    const __m256 f = _mm256_div_ps(_mm256_set1_ps(gw[0]), vsx);
    for (; n + 8 <= N; n += 8) {
      __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + n))), f);
      if (bias) v = _mm256_add_ps(v, _mm256_loadu_ps(bias + n));
      _mm256_storeu_ps(y + n, v);
    }
  } else {
    for (; n + 8 <= N; n += 8) {
      __m256 f = _mm256_div_ps(_mm256_loadu_ps(gw + n), vsx);
      __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + n))), f);
      if (bias) v = _mm256_add_ps(v, _mm256_loadu_ps(bias + n));
      _mm256_storeu_ps(y + n, v);
    }
  }
  for (; n < N; ++n) {
    float v = tl_out_one(acc[n], gw[n * gw_stride], sx);
    y[n] = bias ? v + bias[n] : v;
  }
}

}  // namespace

const TernaryKernels ternary_avx2 = {sum_s8, gemm, epilogue};

}  // namespace lowbit
