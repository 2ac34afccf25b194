// Codebook kernels, AVX2 variant: brute-force nearest code for k <= 16 (the
// first strict minimum, i.e. the lowest index on ties), table-gather dequantize.
#include <immintrin.h>

#include "codebook/codebook.h"
#include "codebook/codebook_ops.h"

namespace lowbit {
namespace {

inline __m256i nearest8(__m256 v, const __m256* c, size_t k) {
  const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  __m256 best = _mm256_and_ps(_mm256_sub_ps(v, c[0]), absmask);
  __m256i idx = _mm256_setzero_si256();
  for (size_t j = 1; j < k; ++j) {
    __m256 d = _mm256_and_ps(_mm256_sub_ps(v, c[j]), absmask);
    __m256 lt = _mm256_cmp_ps(d, best, _CMP_LT_OQ);
    best = _mm256_blendv_ps(best, d, lt);
    idx = _mm256_blendv_epi8(idx, _mm256_set1_epi32(static_cast<int>(j)), _mm256_castps_si256(lt));
  }
  return idx;
}

void quantize(const float* x, size_t n, float scale, const float* cb, size_t k, uint8_t* out) {
  size_t i = 0;
  if (k <= 16) {
    __m256 c[16];
    for (size_t j = 0; j < k; ++j) c[j] = _mm256_set1_ps(cb[j]);
    const __m256 vs = _mm256_set1_ps(scale);
    const __m256i shuf = _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                          0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    for (; i + 8 <= n; i += 8) {
      __m256i q = nearest8(_mm256_div_ps(_mm256_loadu_ps(x + i), vs), c, k);
      q = _mm256_shuffle_epi8(q, shuf);
      uint32_t lo = static_cast<uint32_t>(_mm256_extract_epi32(q, 0));
      uint32_t hi = static_cast<uint32_t>(_mm256_extract_epi32(q, 4));
      uint64_t both = lo | (static_cast<uint64_t>(hi) << 32);
      __builtin_memcpy(out + i, &both, 8);
    }
  }
  for (; i < n; ++i) out[i] = nearest_code(x[i] / scale, cb, k);
}

void dequantize(const uint8_t* q, size_t n, float scale, const float* cb, float* out) {
  const __m256 vs = _mm256_set1_ps(scale);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256i idx = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + i)));
    _mm256_storeu_ps(out + i, _mm256_mul_ps(vs, _mm256_i32gather_ps(cb, idx, 4)));
  }
  for (; i < n; ++i) out[i] = scale * cb[q[i]];
}

void assign(const float* x, size_t n, const float* mid, size_t k, uint64_t* cnt, double* sum) {
  LloydBanks bank(k);
  size_t i = 0;
  if (k <= 17) {
    __m256 m[16];
    for (size_t t = 0; t + 1 < k; ++t) m[t] = _mm256_set1_ps(mid[t]);
    alignas(32) int32_t idx[8];
    for (; i + 8 <= n; i += 8) {
      __m256 v = _mm256_loadu_ps(x + i);
      __m256i j = _mm256_setzero_si256();
      for (size_t t = 0; t + 1 < k; ++t)  // mask is -1 where mid < v
        j = _mm256_sub_epi32(j, _mm256_castps_si256(_mm256_cmp_ps(m[t], v, _CMP_LT_OQ)));
      _mm256_store_si256(reinterpret_cast<__m256i*>(idx), j);
      for (int l = 0; l < 8; ++l) bank.add(i + l, static_cast<size_t>(idx[l]), x[i + l]);
    }
  }
  for (; i < n; ++i) bank.add(i, lloyd_bin(x[i], mid, k), x[i]);
  bank.flush(cnt, sum);
}

}  // namespace

const CodebookKernels codebook_avx2 = {quantize, dequantize, assign};

}  // namespace lowbit
