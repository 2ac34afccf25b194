// Affine kernels, AVX2 variant (compiled with -mavx2 -mfma -mf16c; no FMA is used:
// every product is rounded on its own, as SPEC 1 requires).
#include <immintrin.h>

#include "affine/affine.h"
#include "affine/affine_ops.h"

namespace lowbit {
namespace {

// Accumulates min, max and a "saw NaN/Inf" mask. v*0 is NaN exactly for NaN and Inf.
struct RangeAcc {
  __m256 mn = _mm256_set1_ps(INFINITY), mx = _mm256_set1_ps(-INFINITY), bad = _mm256_setzero_ps();
  void add(__m256 v) {
    mn = _mm256_min_ps(mn, v);
    mx = _mm256_max_ps(mx, v);
    __m256 z = _mm256_mul_ps(v, _mm256_setzero_ps());
    bad = _mm256_or_ps(bad, _mm256_cmp_ps(z, z, _CMP_UNORD_Q));
  }
  void merge(const RangeAcc& o) {
    mn = _mm256_min_ps(mn, o.mn);
    mx = _mm256_max_ps(mx, o.mx);
    bad = _mm256_or_ps(bad, o.bad);
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
  bool ok = _mm256_movemask_ps(a0.bad) == 0;
  for (; i < n; ++i) {
    float v = x[i];
    ok &= finite_f32(v);
    mn = v < mn ? v : mn;
    mx = v > mx ? v : mx;
  }
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
    ok &= _mm256_movemask_ps(a.bad) == 0;
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

// 32 floats -> 32 codes. inv/zp per lane group are passed as vectors.
struct Quant {
  __m256i zp0, zp1, zp2, zp3, qmin, qmax;
  __m256 clamp_lo = _mm256_set1_ps(-kQuantClampF), clamp_hi = _mm256_set1_ps(kQuantClampF);
  bool is_signed;
  __m256i one(__m256 v, __m256 inv, __m256i zp) const {
    v = _mm256_mul_ps(v, inv);
    v = _mm256_min_ps(_mm256_max_ps(v, clamp_lo), clamp_hi);
    __m256i q = _mm256_cvtps_epi32(_mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    q = _mm256_add_epi32(q, zp);
    return _mm256_min_epi32(_mm256_max_epi32(q, qmin), qmax);
  }
  __m256i pack(__m256i a, __m256i b, __m256i c, __m256i d) const {
    __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
    __m256i r = is_signed ? _mm256_packs_epi16(ab, cd) : _mm256_packus_epi16(ab, cd);
    return _mm256_permutevar8x32_epi32(r, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  }
};

void quantize(const float* x, size_t n, float inv, int32_t zp, int32_t qmin, int32_t qmax,
              uint8_t* out) {
  Quant Q;
  Q.qmin = _mm256_set1_epi32(qmin);
  Q.qmax = _mm256_set1_epi32(qmax);
  Q.is_signed = qmin < 0;
  const __m256 vinv = _mm256_set1_ps(inv);
  const __m256i vzp = _mm256_set1_epi32(zp);
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m256i a = Q.one(_mm256_loadu_ps(x + i), vinv, vzp);
    __m256i b = Q.one(_mm256_loadu_ps(x + i + 8), vinv, vzp);
    __m256i c = Q.one(_mm256_loadu_ps(x + i + 16), vinv, vzp);
    __m256i d = Q.one(_mm256_loadu_ps(x + i + 24), vinv, vzp);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), Q.pack(a, b, c, d));
  }
  for (; i < n; ++i) out[i] = static_cast<uint8_t>(quantize_one(x[i], inv, zp, qmin, qmax));
}

void quantize_cols(const float* x, size_t rows, size_t cols, const float* inv, const int32_t* zp,
                   int32_t qmin, int32_t qmax, uint8_t* out) {
  Quant Q;
  Q.qmin = _mm256_set1_epi32(qmin);
  Q.qmax = _mm256_set1_epi32(qmax);
  Q.is_signed = qmin < 0;
  for (size_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    uint8_t* o = out + r * cols;
    size_t c = 0;
    for (; c + 32 <= cols; c += 32) {
      __m256i a = Q.one(_mm256_loadu_ps(xr + c), _mm256_loadu_ps(inv + c),
                        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(zp + c)));
      __m256i b = Q.one(_mm256_loadu_ps(xr + c + 8), _mm256_loadu_ps(inv + c + 8),
                        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(zp + c + 8)));
      __m256i cc = Q.one(_mm256_loadu_ps(xr + c + 16), _mm256_loadu_ps(inv + c + 16),
                         _mm256_loadu_si256(reinterpret_cast<const __m256i*>(zp + c + 16)));
      __m256i d = Q.one(_mm256_loadu_ps(xr + c + 24), _mm256_loadu_ps(inv + c + 24),
                        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(zp + c + 24)));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(o + c), Q.pack(a, b, cc, d));
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
