// Activation quantization kernels, AVX-512 (F+BW+VL+DQ) variant: the AVX2 kernels at twice
// the width, masked tails instead of scalar ones, and vpmovdb narrowing (after the clamp,
// so its truncation is exact). No FMA: x * s is rounded on its own, then rounded half to
// even (vcvtps2dq under the default MXCSR), as in SPEC 1/5.
#include <immintrin.h>

#include "act/act.h"

// GCC 12's AVX-512 intrinsics (vpand, vpmax*, vpmin*, vcvtps2dq, vpmovdb in their
// unmasked forms) start from _mm512_undefined_*() and then warn -W(maybe-)uninitialized
// where they are inlined: a false positive of the headers, not of this code.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "act/act_ops.h"

namespace lowbit {
namespace {

inline __mmask16 tail_mask(size_t r) { return static_cast<__mmask16>((1u << r) - 1u); }

constexpr __mmask16 kAll16 = 0xffff;

inline uint32_t reduce_max_u32(__m512i v) {
  __m256i h = _mm256_max_epu32(_mm512_castsi512_si256(v), _mm512_maskz_extracti64x4_epi64(0xf, v, 1));
  __m128i q = _mm_max_epu32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
  q = _mm_max_epu32(q, _mm_shuffle_epi32(q, _MM_SHUFFLE(1, 0, 3, 2)));
  q = _mm_max_epu32(q, _mm_shuffle_epi32(q, _MM_SHUFFLE(2, 3, 0, 1)));
  return static_cast<uint32_t>(_mm_cvtsi128_si32(q));
}

// Max of |x| as integer bit patterns (see abs_bits): exact, and NaN/Inf show up as
// values >= 0x7f800000.
bool absmax(const float* x, size_t n, float* amax) {
  const __m512i mask = _mm512_set1_epi32(0x7fffffff);
  __m512i m0 = _mm512_setzero_si512(), m1 = m0, m2 = m0, m3 = m0;
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    m0 = _mm512_max_epu32(m0, _mm512_and_si512(_mm512_loadu_si512(x + i), mask));
    m1 = _mm512_max_epu32(m1, _mm512_and_si512(_mm512_loadu_si512(x + i + 16), mask));
    m2 = _mm512_max_epu32(m2, _mm512_and_si512(_mm512_loadu_si512(x + i + 32), mask));
    m3 = _mm512_max_epu32(m3, _mm512_and_si512(_mm512_loadu_si512(x + i + 48), mask));
  }
  for (; i + 16 <= n; i += 16) m0 = _mm512_max_epu32(m0, _mm512_and_si512(_mm512_loadu_si512(x + i), mask));
  if (i < n) m1 = _mm512_max_epu32(m1, _mm512_and_si512(_mm512_maskz_loadu_epi32(tail_mask(n - i), x + i), mask));
  m0 = _mm512_max_epu32(_mm512_max_epu32(m0, m1), _mm512_max_epu32(m2, m3));
  uint32_t m = reduce_max_u32(m0);
  *amax = bits_to_float(m);
  return m < kInfBits;
}

inline __m128i quant16(__m512 v, __m512 s, __m512i lo, __m512i hi) {
  __m512i q = _mm512_maskz_cvtps_epi32(kAll16, _mm512_mul_ps(v, s));  // MXCSR default: round half to even
  return _mm512_maskz_cvtepi32_epi8(kAll16, _mm512_min_epi32(_mm512_max_epi32(q, lo), hi));
}

void quantize(const float* x, size_t n, float s, int32_t qmin, int32_t qmax, int8_t* q) {
  const __m512 vs = _mm512_set1_ps(s);
  const __m512i lo = _mm512_set1_epi32(qmin), hi = _mm512_set1_epi32(qmax);
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    __m128i a = quant16(_mm512_loadu_ps(x + i), vs, lo, hi), b = quant16(_mm512_loadu_ps(x + i + 16), vs, lo, hi);
    __m128i c = quant16(_mm512_loadu_ps(x + i + 32), vs, lo, hi), d = quant16(_mm512_loadu_ps(x + i + 48), vs, lo, hi);
    __m512i r = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set_m128i(b, a)), _mm256_set_m128i(d, c), 1);
    _mm512_storeu_si512(q + i, r);
  }
  for (; i + 16 <= n; i += 16) _mm_storeu_si128(reinterpret_cast<__m128i*>(q + i), quant16(_mm512_loadu_ps(x + i), vs, lo, hi));
  if (i < n) {
    const __mmask16 k = tail_mask(n - i);
    _mm_mask_storeu_epi8(q + i, k, quant16(_mm512_maskz_loadu_ps(k, x + i), vs, lo, hi));
  }
}

}  // namespace

const ActKernels act_avx512 = {absmax, quantize};

}  // namespace lowbit
