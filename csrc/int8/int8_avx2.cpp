// int8 GEMM micro-kernel, AVX2 variant: int16 x int16 -> int32 pair sums with
// vpmaddwd (never saturates for int8/uint8-derived operands), wrapping vpaddd.
#include <immintrin.h>

#include <cstring>

#include "int8/int8.h"

namespace lowbit {
namespace {

// Software prefetch distance into the weight panel (bytes; 32 per pair of inputs).
constexpr int kPrefetchBytes = 1024;

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
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(c + (r) * kInt8NR), c##r##0);     \
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(c + (r) * kInt8NR + 8), c##r##1);

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

void tile(const int16_t* a, size_t lda, int mr, const int8_t* panel, size_t kpairs, int32_t* c) {
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

const Int8Kernels int8_avx2 = {tile};

}  // namespace lowbit
