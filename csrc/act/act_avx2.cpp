// Activation quantization kernels, AVX2 variant (no FMA: the product x * s is
// rounded on its own, then rounded half-to-even to an integer, as in SPEC 1/5).
#include <immintrin.h>

#include "act/act.h"
#include "act/act_ops.h"

namespace lowbit {
namespace {

// Max of |x| as integer bit patterns (see abs_bits): exact, and NaN/Inf show up
// as values >= 0x7f800000.
bool absmax(const float* x, size_t n, float* amax) {
  const __m256i mask = _mm256_set1_epi32(0x7fffffff);
  __m256i m0 = _mm256_setzero_si256(), m1 = m0, m2 = m0, m3 = m0;
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    m0 = _mm256_max_epi32(m0, _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i)), mask));
    m1 = _mm256_max_epi32(m1, _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i + 8)), mask));
    m2 = _mm256_max_epi32(m2, _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i + 16)), mask));
    m3 = _mm256_max_epi32(m3, _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i + 24)), mask));
  }
  for (; i + 8 <= n; i += 8)
    m0 = _mm256_max_epi32(m0, _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i)), mask));
  m0 = _mm256_max_epi32(_mm256_max_epi32(m0, m1), _mm256_max_epi32(m2, m3));
  __m128i h = _mm_max_epi32(_mm256_castsi256_si128(m0), _mm256_extracti128_si256(m0, 1));
  h = _mm_max_epi32(h, _mm_shuffle_epi32(h, _MM_SHUFFLE(1, 0, 3, 2)));
  h = _mm_max_epi32(h, _mm_shuffle_epi32(h, _MM_SHUFFLE(2, 3, 0, 1)));
  uint32_t m = static_cast<uint32_t>(_mm_cvtsi128_si32(h));
  for (; i < n; ++i) {
    uint32_t b = abs_bits(x[i]);
    m = b > m ? b : m;
  }
  *amax = bits_to_float(m);
  return m < kInfBits;
}

inline __m256i quant8(const float* x, __m256 s, __m256i lo, __m256i hi) {
  __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x), s);
  __m256i q = _mm256_cvtps_epi32(_mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  return _mm256_min_epi32(_mm256_max_epi32(q, lo), hi);
}

void quantize(const float* x, size_t n, float s, int32_t qmin, int32_t qmax, int8_t* q) {
  const __m256 vs = _mm256_set1_ps(s);
  const __m256i lo = _mm256_set1_epi32(qmin), hi = _mm256_set1_epi32(qmax);
  const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m256i a = quant8(x + i, vs, lo, hi), b = quant8(x + i + 8, vs, lo, hi);
    __m256i c = quant8(x + i + 16, vs, lo, hi), d = quant8(x + i + 24, vs, lo, hi);
    __m256i r = _mm256_packs_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, d));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + i), _mm256_permutevar8x32_epi32(r, perm));
  }
  for (; i < n; ++i) q[i] = act_quantize_one(x[i], s, qmin, qmax);
}

}  // namespace

const ActKernels act_avx2 = {absmax, quantize};

}  // namespace lowbit
