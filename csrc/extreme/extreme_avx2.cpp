// Extreme quantization kernels, AVX2 variant (no FMA: every product and sum is
// rounded on its own, in the order of extreme.h).
#include <immintrin.h>

#include "extreme/extreme.h"
#include "extreme/extreme_ops.h"

namespace lowbit {
namespace {

// 16 float64 lanes as 4 vectors: acc[k] holds lanes 4k..4k+3.
struct Lanes {
  __m256d acc[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd()};
  void add(__m256 lo8, __m256 hi8) {  // values 16i + 0..7, 16i + 8..15
    acc[0] = _mm256_add_pd(acc[0], _mm256_cvtps_pd(_mm256_castps256_ps128(lo8)));
    acc[1] = _mm256_add_pd(acc[1], _mm256_cvtps_pd(_mm256_extractf128_ps(lo8, 1)));
    acc[2] = _mm256_add_pd(acc[2], _mm256_cvtps_pd(_mm256_castps256_ps128(hi8)));
    acc[3] = _mm256_add_pd(acc[3], _mm256_cvtps_pd(_mm256_extractf128_ps(hi8, 1)));
  }
  void store(double* l) const {
    for (int k = 0; k < 4; ++k) _mm256_storeu_pd(l + 4 * k, acc[k]);
  }
  double tree() const {  // lane_tree in registers: the same additions in the same order
    __m256d s4 = _mm256_add_pd(_mm256_add_pd(acc[0], acc[2]), _mm256_add_pd(acc[1], acc[3]));
    __m128d s2 = _mm_add_pd(_mm256_castpd256_pd128(s4), _mm256_extractf128_pd(s4, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s2, _mm_unpackhi_pd(s2, s2)));
  }
};

inline __m256 abs8(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

// Four vectors of int32 codes in {-1, 0, 1} -> 32 int8, in order.
inline void store_codes(int8_t* q, __m256i a, __m256i b, __m256i c, __m256i d) {
  __m256i r = _mm256_packs_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, d));
  r = _mm256_permutevar8x32_epi32(r, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), r);
}

void block_sums(const float* x, size_t n, double* abs_out, double* sum_out, int8_t* sign_out) {
  const __m256 zero = _mm256_setzero_ps();
  const __m256i one = _mm256_set1_epi32(1);
  for (size_t b = 0; b * kSumBlock < n; ++b) {
    size_t s = b * kSumBlock, len = n - s < kSumBlock ? n - s : kSumBlock;
    const float* xb = x + s;
    Lanes A, S;
    size_t i = 0;
    if (sign_out) {  // sums and the sign codes in one pass
      for (; i + 32 <= len; i += 32) {
        __m256 v[4];
        __m256i r[4];
        for (int k = 0; k < 4; ++k) {
          v[k] = _mm256_loadu_ps(xb + i + 8 * k);
          r[k] = _mm256_or_si256(_mm256_castps_si256(_mm256_cmp_ps(v[k], zero, _CMP_LT_OQ)), one);
        }
        A.add(abs8(v[0]), abs8(v[1]));
        A.add(abs8(v[2]), abs8(v[3]));
        store_codes(sign_out + s + i, r[0], r[1], r[2], r[3]);
      }
      for (size_t j = i; j < len; ++j) sign_out[s + j] = binary_sign_one(xb[j], 0.0f);
    }
    if (sum_out) {
      for (; i + 16 <= len; i += 16) {
        __m256 v0 = _mm256_loadu_ps(xb + i), v1 = _mm256_loadu_ps(xb + i + 8);
        A.add(abs8(v0), abs8(v1));
        S.add(v0, v1);
      }
    } else {
      for (; i + 16 <= len; i += 16) A.add(abs8(_mm256_loadu_ps(xb + i)), abs8(_mm256_loadu_ps(xb + i + 8)));
    }
    if (i == len) {
      abs_out[b] = A.tree();
      if (sum_out) sum_out[b] = S.tree();
      continue;
    }
    double al[kSumLanes], sl[kSumLanes];
    A.store(al);
    S.store(sl);
    lanes_add(xb + i, len - i, 0, al, sum_out ? sl : nullptr);
    abs_out[b] = lane_tree(al);
    if (sum_out) sum_out[b] = lane_tree(sl);
  }
}

// q = (v > hi) - (v < lo) as int32: mask(lo) - mask(hi).
inline __m256i tri(__m256 v, __m256 lo, __m256 hi) {
  return _mm256_sub_epi32(_mm256_castps_si256(_mm256_cmp_ps(v, lo, _CMP_LT_OQ)),
                          _mm256_castps_si256(_mm256_cmp_ps(v, hi, _CMP_GT_OQ)));
}

void ternary_round(const float* x, size_t n, float inv, int8_t* q) {
  const __m256 vinv = _mm256_set1_ps(inv), lo = _mm256_set1_ps(-0.5f), hi = _mm256_set1_ps(0.5f);
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m256i r[4];
    for (int k = 0; k < 4; ++k) r[k] = tri(_mm256_mul_ps(_mm256_loadu_ps(x + i + 8 * k), vinv), lo, hi);
    store_codes(q + i, r[0], r[1], r[2], r[3]);
  }
  for (; i < n; ++i) q[i] = ternary_round_one(x[i], inv);
}

void ternary_threshold(const float* x, size_t n, float a, float t, int8_t* q) {
  const __m256 va = _mm256_set1_ps(a), lo = _mm256_set1_ps(-t), hi = _mm256_set1_ps(t);
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m256i r[4];
    for (int k = 0; k < 4; ++k) r[k] = tri(_mm256_div_ps(_mm256_loadu_ps(x + i + 8 * k), va), lo, hi);
    store_codes(q + i, r[0], r[1], r[2], r[3]);
  }
  for (; i < n; ++i) q[i] = ternary_threshold_one(x[i], a, t);
}

void binary_sign(const float* x, size_t n, float mu, int8_t* q) {
  const __m256 vmu = _mm256_set1_ps(mu), zero = _mm256_setzero_ps();
  const __m256i one = _mm256_set1_epi32(1);
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m256i r[4];
    for (int k = 0; k < 4; ++k) {  // x - mu < 0 -> -1 (all ones | 1), else 1
      __m256 d = _mm256_sub_ps(_mm256_loadu_ps(x + i + 8 * k), vmu);
      r[k] = _mm256_or_si256(_mm256_castps_si256(_mm256_cmp_ps(d, zero, _CMP_LT_OQ)), one);
    }
    store_codes(q + i, r[0], r[1], r[2], r[3]);
  }
  for (; i < n; ++i) q[i] = binary_sign_one(x[i], mu);
}

size_t ternary_twn(const float* x, size_t n, float delta, int8_t* q, double* kept_out) {
  const __m256 vd = _mm256_set1_ps(delta), zero = _mm256_setzero_ps();
  const __m256i one = _mm256_set1_epi32(1);
  size_t kept = 0;
  for (size_t b = 0; b * kSumBlock < n; ++b) {
    size_t s = b * kSumBlock, len = n - s < kSumBlock ? n - s : kSumBlock;
    const float* xb = x + s;
    int8_t* qb = q + s;
    Lanes K;
    size_t i = 0;
    for (; i + 32 <= len; i += 32) {
      __m256 ak[4];
      __m256i r[4];
      for (int k = 0; k < 4; ++k) {
        __m256 v = _mm256_loadu_ps(xb + i + 8 * k), a = abs8(v);
        __m256 keep = _mm256_cmp_ps(a, vd, _CMP_GT_OQ);
        __m256i sgn = _mm256_or_si256(_mm256_castps_si256(_mm256_cmp_ps(v, zero, _CMP_LT_OQ)), one);
        r[k] = _mm256_and_si256(sgn, _mm256_castps_si256(keep));
        ak[k] = _mm256_and_ps(a, keep);  // +0.0 where not kept
        kept += static_cast<size_t>(__builtin_popcount(static_cast<unsigned>(_mm256_movemask_ps(keep))));
      }
      K.add(ak[0], ak[1]);
      K.add(ak[2], ak[3]);
      store_codes(qb + i, r[0], r[1], r[2], r[3]);
    }
    if (i == len) {
      kept_out[b] = K.tree();
      continue;
    }
    double l[kSumLanes];
    K.store(l);
    kept += twn_lanes(xb + i, len - i, 0, delta, qb + i, l);
    kept_out[b] = lane_tree(l);
  }
  return kept;
}

struct Ops {
  static void block_sums(const float* x, size_t n, double* a, double* s, int8_t* q) {
    lowbit::block_sums(x, n, a, s, q);
  }
  static void ternary_round(const float* x, size_t n, float inv, int8_t* q) { lowbit::ternary_round(x, n, inv, q); }
  static size_t ternary_twn(const float* x, size_t n, float d, int8_t* q, double* k) {
    return lowbit::ternary_twn(x, n, d, q, k);
  }
  static void binary_sign(const float* x, size_t n, float mu, int8_t* q) { lowbit::binary_sign(x, n, mu, q); }
};

bool small_groups(const float* x, size_t count, size_t group, ExtremeMethod m, int8_t* q, float* scale) {
  return small_groups_impl<Ops>(x, count, group, m, q, scale);
}

}  // namespace

const ExtremeKernels extreme_avx2 = {block_sums,  ternary_round, ternary_twn, ternary_threshold,
                                     binary_sign, small_groups};

}  // namespace lowbit
