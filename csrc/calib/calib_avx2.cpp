// Calibration kernels, AVX2 variant. Every float32 product is rounded on its own,
// as the reference computes it (the one FMA, in acc_lo/acc_hi, is exact).
#include <immintrin.h>

#include "calib/calib.h"
#include "calib/calib_ops.h"

namespace lowbit {
namespace {

void abs_histogram(const float* x, size_t n, double s, uint64_t* hist) {
  // Four sub-histograms break the store-to-load chain of repeated bins.
  uint32_t sub[4][kKlBins] = {};
  const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256d vs = _mm256_set1_pd(s);
  const __m128i vmax = _mm_set1_epi32(kKlBins - 1);
  alignas(32) int32_t idx[8];
  size_t i = 0;
  while (i < n) {
    // flush before a uint32 count could overflow
    size_t end = n - i > (size_t{1} << 30) ? i + (size_t{1} << 30) : n;
    for (; i + 8 <= end; i += 8) {
      __m256 v = _mm256_and_ps(_mm256_loadu_ps(x + i), absmask);
      __m256d lo = _mm256_mul_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), vs);
      __m256d hi = _mm256_mul_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)), vs);
      __m128i il = _mm_min_epi32(_mm256_cvttpd_epi32(lo), vmax);
      __m128i ih = _mm_min_epi32(_mm256_cvttpd_epi32(hi), vmax);
      _mm_store_si128(reinterpret_cast<__m128i*>(idx), il);
      _mm_store_si128(reinterpret_cast<__m128i*>(idx + 4), ih);
      ++sub[0][idx[0]];
      ++sub[1][idx[1]];
      ++sub[2][idx[2]];
      ++sub[3][idx[3]];
      ++sub[0][idx[4]];
      ++sub[1][idx[5]];
      ++sub[2][idx[6]];
      ++sub[3][idx[7]];
    }
    for (; i < end; ++i) ++sub[0][kl_bin(x[i], s)];
    for (int b = 0; b < kKlBins; ++b) {
      hist[b] += static_cast<uint64_t>(sub[0][b]) + sub[1][b] + sub[2][b] + sub[3][b];
      sub[0][b] = sub[1][b] = sub[2][b] = sub[3][b] = 0;
    }
  }
}

// acc + double(e)^2 for the low / high four lanes of e. The square of a float32
// is exact in float64 (48 significant bits), so the fused multiply-add rounds
// once, exactly as the separate multiply and add do: FMA changes nothing here.
inline __m256d acc_lo(__m256d acc, __m256 e) {
  __m256d d = _mm256_cvtps_pd(_mm256_castps256_ps128(e));
  return _mm256_fmadd_pd(d, d, acc);
}
inline __m256d acc_hi(__m256d acc, __m256 e) {
  __m256d d = _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1));
  return _mm256_fmadd_pd(d, d, acc);
}

double hsum(__m256d v) {
  __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
  return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

void mse_objective(const float* x, size_t n, const float* inv, const float* scale, const float* qlo,
                   const float* qhi, size_t ncand, double* acc) {
  constexpr size_t kBlock = 2048;  // 8 KB of x stays in L1 across all candidates
  for (size_t b0 = 0; b0 < n; b0 += kBlock) {
    size_t len = n - b0 < kBlock ? n - b0 : kBlock;
    const float* xb = x + b0;
    for (size_t k = 0; k < ncand; ++k) {
      const __m256 vi = _mm256_set1_ps(inv[k]), vs = _mm256_set1_ps(scale[k]);
      const __m256 vlo = _mm256_set1_ps(qlo[k]), vhi = _mm256_set1_ps(qhi[k]);
      __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd(), a2 = _mm256_setzero_pd(),
              a3 = _mm256_setzero_pd();
      size_t i = 0;
      for (; i + 16 <= len; i += 16) {
        __m256 v0 = _mm256_loadu_ps(xb + i), v1 = _mm256_loadu_ps(xb + i + 8);
        __m256 t0 = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(v0, vi), vlo), vhi);
        __m256 t1 = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(v1, vi), vlo), vhi);
        t0 = _mm256_round_ps(t0, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        t1 = _mm256_round_ps(t1, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        __m256 e0 = _mm256_sub_ps(v0, _mm256_mul_ps(vs, t0));
        __m256 e1 = _mm256_sub_ps(v1, _mm256_mul_ps(vs, t1));
        a0 = acc_lo(a0, e0);
        a1 = acc_hi(a1, e0);
        a2 = acc_lo(a2, e1);
        a3 = acc_hi(a3, e1);
      }
      double tail = 0.0;
      for (; i < len; ++i) {
        double e = mse_error(xb[i], inv[k], scale[k], qlo[k], qhi[k]);
        tail += e * e;
      }
      acc[k] += hsum(_mm256_add_pd(_mm256_add_pd(a0, a1), _mm256_add_pd(a2, a3))) + tail;
    }
  }
}

}  // namespace

const CalibKernels calib_avx2 = {abs_histogram, mse_objective};

}  // namespace lowbit
