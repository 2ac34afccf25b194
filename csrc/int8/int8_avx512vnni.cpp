// int8 GEMM register tiles, AVX-512 VNNI variant: layout "u8x4.n32" (int8.h).
//
// Weights are stored u = B + 128 in [0, 255] (unsigned), activations stay int8, and
// vpdpbusd (u8 x s8: four products summed into each int32 lane, added without
// saturation) does 64 exact multiply-adds per instruction; the driver removes the offset
// with acc = dot - 128 * rowsum(A). One layout serves every int8 weight, 7-bit ones too.
//
// Tile: MR <= 12 rows x 32 channels = 2 MR zmm accumulators, 2 weight registers and one
// broadcast activation quad per row and group of 4 inputs: per group, 2 weight loads,
// MR broadcasts and 2 MR vpdpbusd (no other arithmetic).
#include <immintrin.h>

#include <cstring>

#include "int8/int8.h"
#include "int8/int8_ops.h"

namespace lowbit {
namespace {

constexpr int kNR = 32;  // output channels per panel: two zmm of 16 int32 lanes
constexpr int kMR = 12;  // 24 accumulators + 2 weights + 1 broadcast of 32 zmm

inline __m512i bcast_quad(const int8_t* p) {
  int32_t quad;
  std::memcpy(&quad, p, sizeof quad);  // A[m, 4g .. 4g + 3]
  return _mm512_set1_epi32(quad);
}

template <int MR>
void tile_mr(const int8_t* a, size_t lda, const uint8_t* panel, size_t kgroups, int32_t* c) {
  __m512i acc[MR][2];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_si512();
  size_t g = 0;
  if constexpr (MR <= 2) {
    // few rows: a second set of accumulators for odd groups hides vpdpbusd's latency
    __m512i odd[MR][2];
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) odd[r][0] = odd[r][1] = _mm512_setzero_si512();
    for (; g + 2 <= kgroups; g += 2) {
      const uint8_t* bp = panel + kNR * 4 * g;
      const __m512i w0 = _mm512_loadu_si512(bp), w1 = _mm512_loadu_si512(bp + 64);
      const __m512i w2 = _mm512_loadu_si512(bp + 128), w3 = _mm512_loadu_si512(bp + 192);
#pragma GCC unroll 16
      for (int r = 0; r < MR; ++r) {
        const __m512i av = bcast_quad(a + r * lda + 4 * g);
        const __m512i bv = bcast_quad(a + r * lda + 4 * g + 4);
        acc[r][0] = _mm512_dpbusd_epi32(acc[r][0], w0, av);
        acc[r][1] = _mm512_dpbusd_epi32(acc[r][1], w1, av);
        odd[r][0] = _mm512_dpbusd_epi32(odd[r][0], w2, bv);
        odd[r][1] = _mm512_dpbusd_epi32(odd[r][1], w3, bv);
      }
    }
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      acc[r][0] = _mm512_add_epi32(acc[r][0], odd[r][0]);
      acc[r][1] = _mm512_add_epi32(acc[r][1], odd[r][1]);
    }
  }
  for (; g < kgroups; ++g) {
    const uint8_t* bp = panel + kNR * 4 * g;
    const __m512i w0 = _mm512_loadu_si512(bp), w1 = _mm512_loadu_si512(bp + 64);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      const __m512i av = bcast_quad(a + r * lda + 4 * g);
      acc[r][0] = _mm512_dpbusd_epi32(acc[r][0], w0, av);
      acc[r][1] = _mm512_dpbusd_epi32(acc[r][1], w1, av);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) {
    _mm512_storeu_si512(c + r * kNR, acc[r][0]);
    _mm512_storeu_si512(c + r * kNR + 16, acc[r][1]);
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
    case 6: return tile_mr<6>(a, lda, panel, kgroups, c);
    case 7: return tile_mr<7>(a, lda, panel, kgroups, c);
    case 8: return tile_mr<8>(a, lda, panel, kgroups, c);
    case 9: return tile_mr<9>(a, lda, panel, kgroups, c);
    case 10: return tile_mr<10>(a, lda, panel, kgroups, c);
    case 11: return tile_mr<11>(a, lda, panel, kgroups, c);
    default: return tile_mr<12>(a, lda, panel, kgroups, c);
  }
}

// Int8RowSumFn: one vpdpbusd of the ones vector per 64 bytes (four bytes summed into each
// int32 lane, wrapping), the tail under a byte mask.
int32_t rowsum(const int8_t* a, size_t n) {
  const __m512i ones = _mm512_set1_epi8(1);
  __m512i acc = _mm512_setzero_si512(), acc2 = _mm512_setzero_si512();
  size_t k = 0;
  for (; k + 128 <= n; k += 128) {
    acc = _mm512_dpbusd_epi32(acc, ones, _mm512_loadu_si512(a + k));
    acc2 = _mm512_dpbusd_epi32(acc2, ones, _mm512_loadu_si512(a + k + 64));
  }
  for (; k + 64 <= n; k += 64) acc = _mm512_dpbusd_epi32(acc, ones, _mm512_loadu_si512(a + k));
  if (k < n) {
    const __mmask64 tail = (uint64_t{1} << (n - k)) - 1;  // n - k < 64
    acc = _mm512_dpbusd_epi32(acc, ones, _mm512_maskz_loadu_epi8(tail, a + k));
  }
  alignas(64) uint32_t lanes[16];  // (GCC 12's _mm512_reduce_add_epi32 warns -Wuninitialized)
  _mm512_store_si512(lanes, _mm512_add_epi32(acc, acc2));
  uint32_t s = 0;
  for (uint32_t v : lanes) s += v;
  return static_cast<int32_t>(s);
}

constexpr Int8Layout kLayout = {"u8x4.n32", kNR, kMR, 4, 128, -128, 127, Int8Operand::kS8};

}  // namespace

const Int8Kernels int8_avx512vnni = {{kLayout, tile}, {kLayout, tile}, int8_epilogue<kNR>, rowsum};

}  // namespace lowbit
