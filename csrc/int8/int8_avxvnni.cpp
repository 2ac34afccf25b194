// int8 GEMM register tiles, AVX-VNNI variant (256-bit, VEX: CPUs with VNNI but without
// AVX-512, e.g. Intel Alder Lake and later client cores): layout "u8x4.n16" (int8.h).
//
// Weights are stored u = B + 128 in [0, 255] (unsigned), activations stay int8, and
// vpdpbusd (u8 x s8: four products summed into each int32 lane, added without
// saturation) does 32 exact multiply-adds per instruction; the driver removes the offset
// with acc = dot - 128 * rowsum(A). One layout serves every int8 weight, 7-bit ones too.
//
// The same tile as the AVX-512 VNNI variant at half the width: MR <= 6 rows x 16 channels
// = 2 MR ymm accumulators, 2 weight registers and one broadcast (15 of 16 registers); per
// group of 4 inputs, 2 weight loads, MR broadcasts and 2 MR vpdpbusd (32 multiply-adds
// each, against 3 instructions per 32 in the AVX2 u7 tile and 6 in its int16 tile).
#include <immintrin.h>

#include <cstring>

#include "int8/int8.h"
#include "int8/int8_ops.h"

namespace lowbit {
namespace {

constexpr int kNR = 16;  // output channels per panel: two ymm of 8 int32 lanes
constexpr int kMR = 6;   // 12 accumulators + 2 weights + 1 broadcast of 16 ymm

inline __m256i bcast_quad(const int8_t* p) {
  int32_t quad;
  std::memcpy(&quad, p, sizeof quad);  // A[m, 4g .. 4g + 3]
  return _mm256_set1_epi32(quad);
}

inline __m256i ld(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }

template <int MR>
void tile_mr(const int8_t* a, size_t lda, const uint8_t* panel, size_t kgroups, int32_t* c) {
  __m256i acc[MR][2];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
  size_t g = 0;
  if constexpr (MR <= 2) {
    // few rows: a second set of accumulators for odd groups hides vpdpbusd's latency
    __m256i odd[MR][2];
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) odd[r][0] = odd[r][1] = _mm256_setzero_si256();
    for (; g + 2 <= kgroups; g += 2) {
      const uint8_t* bp = panel + kNR * 4 * g;
      const __m256i w0 = ld(bp), w1 = ld(bp + 32);
      const __m256i w2 = ld(bp + 64), w3 = ld(bp + 96);
#pragma GCC unroll 16
      for (int r = 0; r < MR; ++r) {
        const __m256i av = bcast_quad(a + r * lda + 4 * g);
        const __m256i bv = bcast_quad(a + r * lda + 4 * g + 4);
        acc[r][0] = _mm256_dpbusd_avx_epi32(acc[r][0], w0, av);
        acc[r][1] = _mm256_dpbusd_avx_epi32(acc[r][1], w1, av);
        odd[r][0] = _mm256_dpbusd_avx_epi32(odd[r][0], w2, bv);
        odd[r][1] = _mm256_dpbusd_avx_epi32(odd[r][1], w3, bv);
      }
    }
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      acc[r][0] = _mm256_add_epi32(acc[r][0], odd[r][0]);
      acc[r][1] = _mm256_add_epi32(acc[r][1], odd[r][1]);
    }
  }
  for (; g < kgroups; ++g) {
    const uint8_t* bp = panel + kNR * 4 * g;
    const __m256i w0 = ld(bp), w1 = ld(bp + 32);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      const __m256i av = bcast_quad(a + r * lda + 4 * g);
      acc[r][0] = _mm256_dpbusd_avx_epi32(acc[r][0], w0, av);
      acc[r][1] = _mm256_dpbusd_avx_epi32(acc[r][1], w1, av);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(c + r * kNR), acc[r][0]);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(c + r * kNR + 8), acc[r][1]);
  }
}

void tile(const void* a_, size_t lda, int mr, const uint8_t* panel, size_t kgroups, int32_t* c) {
  const int8_t* a = static_cast<const int8_t*>(a_);
  switch (mr) {
    case 1: return tile_mr<1>(a, lda, panel, kgroups, c);
    case 2: return tile_mr<2>(a, lda, panel, kgroups, c);
    case 3: return tile_mr<3>(a, lda, panel, kgroups, c);
    case 4: return tile_mr<4>(a, lda, panel, kgroups, c);
    case 5: return tile_mr<5>(a, lda, panel, kgroups, c);
    default: return tile_mr<6>(a, lda, panel, kgroups, c);
  }
}

constexpr Int8Layout kLayout = {"u8x4.n16", kNR, kMR, 4, 128, -128, 127, Int8Operand::kS8};

}  // namespace

const Int8Kernels int8_avxvnni = {{kLayout, tile}, {kLayout, tile}, int8_epilogue<kNR>, int8_rowsum};

}  // namespace lowbit
