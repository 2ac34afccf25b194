// int8 GEMM micro-kernels, AVX2 variant.
//  - int16 layout: int16 x int16 -> int32 pair sums with vpmaddwd (never saturates for
//    int8/uint8-derived operands), wrapping vpaddd.
//  - u7 layout: vpmaddubsw (u in [0, 127] x int8, int16 pair sums that cannot saturate),
//    vpmaddwd with ones into int32 lanes, vpaddd: 32 products per multiply instead of 16.
#include <immintrin.h>

#include <cstring>

#include "int8/int8.h"
#include "int8/int8_ops.h"

namespace lowbit {
namespace {

constexpr size_t kNR = 16;  // output channels per panel (both layouts)

// Software prefetch distance into the weight panel (bytes; 32 per pair of inputs).
constexpr int kPrefetchBytes = 1024;
// The u7 tiles of 2..5 rows stream their panel from L3/DRAM: 64 bytes per step, fetched
// ~300 cycles of DRAM latency ahead.
constexpr int kPrefetchFarBytes = 4096;

inline __m256i bcast_pair(const int16_t* p) {
  int32_t pair;
  std::memcpy(&pair, p, sizeof pair);  // (A[m, 2kp], A[m, 2kp + 1])
  return _mm256_set1_epi32(pair);
}

// One row of a tile: acc0/acc1 (channels 0-7 / 8-15) += a pair x b0/b1.
#define LOWBIT_INT8_ROW(r)                                   \
  {                                                          \
    __m256i av = bcast_pair(a##r + 2 * kp);                  \
    c##r##0 = _mm256_add_epi32(c##r##0, _mm256_madd_epi16(av, b0)); \
    c##r##1 = _mm256_add_epi32(c##r##1, _mm256_madd_epi16(av, b1)); \
  }

#define LOWBIT_INT8_STORE(r)                                                        \
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(c + (r) * kNR), c##r##0);     \
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(c + (r) * kNR + 8), c##r##1);

// Tiles of MR rows x 16 channels; rows past mr read row 0 again (harmless, not stored).
template <int MR>
void tile_mr(const int16_t* a, size_t lda, const int8_t* panel, size_t kpairs, int32_t* c) {
  const int16_t* a0 = a;
  const int16_t* a1 = MR > 1 ? a + lda : a;
  const int16_t* a2 = MR > 2 ? a + 2 * lda : a;
  const int16_t* a3 = MR > 3 ? a + 3 * lda : a;
  const int16_t* a4 = MR > 4 ? a + 4 * lda : a;
  const int16_t* a5 = MR > 5 ? a + 5 * lda : a;
  __m256i c00 = _mm256_setzero_si256(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  __m256i c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  const __m128i* bp = reinterpret_cast<const __m128i*>(panel);
  for (size_t kp = 0; kp < kpairs; ++kp) {
    // compute-heavy tiles: fetch the weight stream ahead (light tiles leave it to the hardware)
    if (MR >= 4 && (kp & 1) == 0) _mm_prefetch(reinterpret_cast<const char*>(bp + 2 * kp) + kPrefetchBytes, _MM_HINT_T0);
    __m256i b0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(bp + 2 * kp));
    __m256i b1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(bp + 2 * kp + 1));
    LOWBIT_INT8_ROW(0)
    if (MR > 1) LOWBIT_INT8_ROW(1)
    if (MR > 2) LOWBIT_INT8_ROW(2)
    if (MR > 3) LOWBIT_INT8_ROW(3)
    if (MR > 4) LOWBIT_INT8_ROW(4)
    if (MR > 5) LOWBIT_INT8_ROW(5)
  }
  LOWBIT_INT8_STORE(0)
  if (MR > 1) { LOWBIT_INT8_STORE(1) }
  if (MR > 2) { LOWBIT_INT8_STORE(2) }
  if (MR > 3) { LOWBIT_INT8_STORE(3) }
  if (MR > 4) { LOWBIT_INT8_STORE(4) }
  if (MR > 5) { LOWBIT_INT8_STORE(5) }
}

#undef LOWBIT_INT8_ROW
#undef LOWBIT_INT8_STORE

// ---- u7 layout -----------------------------------------------------------------

inline __m256i bcast_quad(const int8_t* p) {
  int32_t quad;
  std::memcpy(&quad, p, sizeof quad);  // A[m, 4kq .. 4kq + 3]
  return _mm256_set1_epi32(quad);
}

alignas(32) const int16_t kOnes16[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};

// One row of a u7 tile: c0/c1 (channels 0-7 / 8-15) += the products of a[4kq .. 4kq + 3]
// with the two weight vectors. In assembly, one statement per row: GCC's allocation of
// the intrinsics version adds copies and spills the accumulators (a third of the time);
// the ones vector is read from memory so that 6 rows fit the 16 registers.
inline void u7_row(const int8_t* x, size_t k4, __m256i b0, __m256i b1, __m256i& c0, __m256i& c1) {
  __m256i av, t;
  __asm__("vpbroadcastd (%[x],%[k4]), %[av]\n\t"
          "vpmaddubsw %[av], %[b0], %[t]\n\t"
          "vpmaddwd (%[ones]), %[t], %[t]\n\t"
          "vpaddd %[t], %[c0], %[c0]\n\t"
          "vpmaddubsw %[av], %[b1], %[t]\n\t"
          "vpmaddwd (%[ones]), %[t], %[t]\n\t"
          "vpaddd %[t], %[c1], %[c1]\n\t"
          : [c0] "+x"(c0), [c1] "+x"(c1), [av] "=&x"(av), [t] "=&x"(t)
          : [b0] "x"(b0), [b1] "x"(b1), [x] "r"(x), [k4] "r"(k4), [ones] "r"(kOnes16)
          : "memory");
}

// Tiles of MR <= 6 rows x 16 channels: 2 MR accumulators + 2 weights + broadcast + product.
// Named variables, not arrays: GCC keeps arrays of accumulators in memory here.
template <int MR>
void tile_u7_mr(const int8_t* a, size_t lda, const uint8_t* panel, size_t kquads, int32_t* c) {
  __m256i c00 = _mm256_setzero_si256(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  __m256i c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  const int8_t *x0 = a, *x1 = a + lda, *x2 = a + 2 * lda, *x3 = a + 3 * lda, *x4 = a + 4 * lda,
               *x5 = a + 5 * lda;  // rows past MR are never read
  for (size_t kq = 0; kq < kquads; ++kq) {
    const uint8_t* bp = panel + 64 * kq;
    const size_t k4 = 4 * kq;
    // 6-row tiles find the panel in L2; one row: the hardware prefetcher alone is faster (measured).
    if (MR > 1) _mm_prefetch(reinterpret_cast<const char*>(bp) + (MR < 6 ? kPrefetchFarBytes : kPrefetchBytes), _MM_HINT_T0);
    const __m256i b0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bp));
    const __m256i b1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bp + 32));
    u7_row(x0, k4, b0, b1, c00, c01);
    if constexpr (MR > 1) u7_row(x1, k4, b0, b1, c10, c11);
    if constexpr (MR > 2) u7_row(x2, k4, b0, b1, c20, c21);
    if constexpr (MR > 3) u7_row(x3, k4, b0, b1, c30, c31);
    if constexpr (MR > 4) u7_row(x4, k4, b0, b1, c40, c41);
    if constexpr (MR > 5) u7_row(x5, k4, b0, b1, c50, c51);
  }
  auto store = [c](int i, __m256i v) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(c + 8 * i), v); };
  store(0, c00), store(1, c01);
  if constexpr (MR > 1) store(2, c10), store(3, c11);
  if constexpr (MR > 2) store(4, c20), store(5, c21);
  if constexpr (MR > 3) store(6, c30), store(7, c31);
  if constexpr (MR > 4) store(8, c40), store(9, c41);
  if constexpr (MR > 5) store(10, c50), store(11, c51);
}

void tile_u7(const void* a_, size_t lda, int mr, const uint8_t* panel, size_t kquads, int32_t* c) {
  const int8_t* a = static_cast<const int8_t*>(a_);
  switch (mr) {
    case 1: return tile_u7_mr<1>(a, lda, panel, kquads, c);
    case 2: return tile_u7_mr<2>(a, lda, panel, kquads, c);
    case 3: return tile_u7_mr<3>(a, lda, panel, kquads, c);
    case 4: return tile_u7_mr<4>(a, lda, panel, kquads, c);
    case 5: return tile_u7_mr<5>(a, lda, panel, kquads, c);
    default: return tile_u7_mr<6>(a, lda, panel, kquads, c);
  }
}

void tile(const void* a_, size_t lda, int mr, const uint8_t* panel_, size_t kpairs, int32_t* c) {
  const int16_t* a = static_cast<const int16_t*>(a_);
  const int8_t* panel = reinterpret_cast<const int8_t*>(panel_);
  switch (mr) {
    case 1: return tile_mr<1>(a, lda, panel, kpairs, c);
    case 2: return tile_mr<2>(a, lda, panel, kpairs, c);
    case 3: return tile_mr<3>(a, lda, panel, kpairs, c);
    case 4: return tile_mr<4>(a, lda, panel, kpairs, c);
    case 5: return tile_mr<5>(a, lda, panel, kpairs, c);
    default: return tile_mr<6>(a, lda, panel, kpairs, c);
  }
}

}  // namespace

const Int8Kernels int8_avx2 = {
    {{"i16x2.n16", 16, 6, 2, 0, -128, 127, Int8Operand::kI16}, tile},
    {{"u7x4.n16", 16, 6, 4, 64, -64, 63, Int8Operand::kS8}, tile_u7},
    int8_epilogue<kNR>,
    int8_rowsum,
};

}  // namespace lowbit
