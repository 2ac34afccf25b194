// Affine kernels, AVX2 variant (compiled with -mavx2 -mfma -mf16c; no FMA is used:
// every product is rounded on its own, as SPEC 1 requires).
#include <immintrin.h>

#include "affine/affine.h"
#include "affine/affine_ops.h"

namespace lowbit {
namespace {

// Accumulates min, max and a NaN mask; +-Inf shows in the final min/max.
struct RangeAcc {
  __m256 mn = _mm256_set1_ps(INFINITY), mx = _mm256_set1_ps(-INFINITY), nan = _mm256_setzero_ps();
  void add(__m256 v) {
    mn = _mm256_min_ps(mn, v);
    mx = _mm256_max_ps(mx, v);
    nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
  }
  void merge(const RangeAcc& o) {
    mn = _mm256_min_ps(mn, o.mn);
    mx = _mm256_max_ps(mx, o.mx);
    nan = _mm256_or_ps(nan, o.nan);
  }
  bool ok(float lo, float hi) const {
    return _mm256_movemask_ps(nan) == 0 && lo != -INFINITY && hi != INFINITY;
  }
};

float hmin(__m256 v) {
  __m128 m = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_min_ps(m, _mm_movehl_ps(m, m));
  m = _mm_min_ss(m, _mm_shuffle_ps(m, m, 1));
  return _mm_cvtss_f32(m);
}
float hmax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
  return _mm_cvtss_f32(m);
}

bool range(const float* x, size_t n, float* lo, float* hi) {
  RangeAcc a0, a1, a2, a3;
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    // Short groups end the hardware prefetcher's stream often: ask for data 4 KiB ahead.
    _mm_prefetch(reinterpret_cast<const char*>(x + i) + 4096, _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(x + i) + 4096 + 64, _MM_HINT_T0);
    a0.add(_mm256_loadu_ps(x + i));
    a1.add(_mm256_loadu_ps(x + i + 8));
    a2.add(_mm256_loadu_ps(x + i + 16));
    a3.add(_mm256_loadu_ps(x + i + 24));
  }
  for (; i + 8 <= n; i += 8) a0.add(_mm256_loadu_ps(x + i));
  a0.merge(a1);
  a2.merge(a3);
  a0.merge(a2);
  float mn = hmin(a0.mn), mx = hmax(a0.mx);
  bool ok = a0.ok(mn, mx);
  ok &= range_scalar(x + i, n - i, mn, mx);
  *lo = mn;
  *hi = mx;
  return ok;
}

bool range_cols(const float* x, size_t rows, size_t cols, float* lo, float* hi) {
  bool ok = true;
  size_t c = 0;
  for (; c + 8 <= cols; c += 8) {
    RangeAcc a;
    a.mn = _mm256_loadu_ps(lo + c);
    a.mx = _mm256_loadu_ps(hi + c);
    for (size_t r = 0; r < rows; ++r) a.add(_mm256_loadu_ps(x + r * cols + c));
    _mm256_storeu_ps(lo + c, a.mn);
    _mm256_storeu_ps(hi + c, a.mx);
    ok &= _mm256_movemask_ps(a.nan) == 0 && hmin(a.mn) != -INFINITY && hmax(a.mx) != INFINITY;
  }
  for (; c < cols; ++c) {
    for (size_t r = 0; r < rows; ++r) {
      float v = x[r * cols + c];
      ok &= finite_f32(v);
      lo[c] = v < lo[c] ? v : lo[c];
      hi[c] = v > hi[c] ? v : hi[c];
    }
  }
  return ok;
}

// Codes of 8 floats: the product clamped in float to [qmin - zp, qmax - zp] (see
// quantize_one), converted with the default rounding (half to even), plus zp.
struct Quant {
  bool is_signed;
  static __m256i one(__m256 v, __m256 inv, __m256 lo, __m256 hi, __m256i zp) {
    v = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(v, inv), lo), hi);
    return _mm256_add_epi32(_mm256_cvtps_epi32(v), zp);
  }
  __m256i pack(__m256i a, __m256i b, __m256i c, __m256i d) const {
    __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
    __m256i r = is_signed ? _mm256_packs_epi16(ab, cd) : _mm256_packus_epi16(ab, cd);
    return _mm256_permutevar8x32_epi32(r, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  }
};

inline __m256 bound(int32_t q, int32_t zp) { return _mm256_set1_ps(static_cast<float>(q - zp)); }

void quantize(const float* x, size_t n, float inv, int32_t zp, int32_t qmin, int32_t qmax,
              uint8_t* out) {
  Quant Q{qmin < 0};
  const __m256 vinv = _mm256_set1_ps(inv), lo = bound(qmin, zp), hi = bound(qmax, zp);
  const __m256i vzp = _mm256_set1_epi32(zp);
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m256i a = Q.one(_mm256_loadu_ps(x + i), vinv, lo, hi, vzp);
    __m256i b = Q.one(_mm256_loadu_ps(x + i + 8), vinv, lo, hi, vzp);
    __m256i c = Q.one(_mm256_loadu_ps(x + i + 16), vinv, lo, hi, vzp);
    __m256i d = Q.one(_mm256_loadu_ps(x + i + 24), vinv, lo, hi, vzp);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), Q.pack(a, b, c, d));
  }
  for (; i < n; ++i) out[i] = static_cast<uint8_t>(quantize_one(x[i], inv, zp, qmin, qmax));
}

void quantize_cols(const float* x, size_t rows, size_t cols, const float* inv, const int32_t* zp,
                   int32_t qmin, int32_t qmax, uint8_t* out) {
  Quant Q{qmin < 0};
  const __m256 fqmin = _mm256_set1_ps(static_cast<float>(qmin)), fqmax = _mm256_set1_ps(static_cast<float>(qmax));
  for (size_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    uint8_t* o = out + r * cols;
    size_t c = 0;
    for (; c + 32 <= cols; c += 32) {
      __m256i q[4];
      for (int k = 0; k < 4; ++k) {
        __m256i z = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(zp + c + 8 * k));
        __m256 fz = _mm256_cvtepi32_ps(z);  // exact: |zp| <= 255
        q[k] = Q.one(_mm256_loadu_ps(xr + c + 8 * k), _mm256_loadu_ps(inv + c + 8 * k),
                     _mm256_sub_ps(fqmin, fz), _mm256_sub_ps(fqmax, fz), z);
      }
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(o + c), Q.pack(q[0], q[1], q[2], q[3]));
    }
    for (; c < cols; ++c) o[c] = static_cast<uint8_t>(quantize_one(xr[c], inv[c], zp[c], qmin, qmax));
  }
}

inline __m256i load8_codes(const uint8_t* q, bool is_signed) {
  __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(q));
  return is_signed ? _mm256_cvtepi8_epi32(b) : _mm256_cvtepu8_epi32(b);
}

bool quantize_groups(const float* x, size_t len, size_t group, size_t g0, size_t g1, const AffineParams& p,
                     const float* clip_lo, const float* clip_hi, uint8_t* codes, float* scale, int32_t* zp) {
  return quantize_groups_batched(range, quantize, x, len, group, g0, g1, p.scheme == AffineScheme::minmax, p.qmin,
                                 p.qmax, p.absmax_qmax, clip_lo, clip_hi, codes, scale, zp);
}

void dequantize(const uint8_t* q, bool is_signed, size_t n, float scale, int32_t zp, float* out) {
  const __m256 vs = _mm256_set1_ps(scale);
  const __m256i vzp = _mm256_set1_epi32(zp);
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    for (int k = 0; k < 4; ++k) {
      __m256i v = _mm256_sub_epi32(load8_codes(q + i + 8 * k, is_signed), vzp);
      _mm256_storeu_ps(out + i + 8 * k, _mm256_mul_ps(vs, _mm256_cvtepi32_ps(v)));
    }
  }
  for (; i + 8 <= n; i += 8) {
    __m256i v = _mm256_sub_epi32(load8_codes(q + i, is_signed), vzp);
    _mm256_storeu_ps(out + i, _mm256_mul_ps(vs, _mm256_cvtepi32_ps(v)));
  }
  for (; i < n; ++i) out[i] = dequantize_one(load_code(q, i, is_signed), scale, zp);
}

void dequantize_cols(const uint8_t* q, bool is_signed, size_t rows, size_t cols, const float* scale,
                     const int32_t* zp, float* out) {
  for (size_t r = 0; r < rows; ++r) {
    const uint8_t* qr = q + r * cols;
    float* o = out + r * cols;
    size_t c = 0;
    for (; c + 8 <= cols; c += 8) {
      __m256i v = _mm256_sub_epi32(load8_codes(qr + c, is_signed),
                                   _mm256_loadu_si256(reinterpret_cast<const __m256i*>(zp + c)));
      _mm256_storeu_ps(o + c, _mm256_mul_ps(_mm256_loadu_ps(scale + c), _mm256_cvtepi32_ps(v)));
    }
    for (; c < cols; ++c) o[c] = dequantize_one(load_code(qr, c, is_signed), scale[c], zp[c]);
  }
}

}  // namespace

const AffineKernels affine_avx2 = {range, range_cols, quantize, quantize_cols, quantize_groups, dequantize,
                                         dequantize_cols};

}  // namespace lowbit
