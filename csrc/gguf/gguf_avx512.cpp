// GGUF block formats, AVX-512 variant (F+BW+VL+DQ on top of the avx2 flags; no FMA is
// used and the file is built with -ffp-contract=off, like every variant).
//
// What it adds over avx2 are the scale searches of the K-quant and IQ4 encoders
// (Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS), which are where those encoders spend their time;
// every other entry of the table is the avx2 variant's.
//
// Byte-exact with ggml as the avx2 code is: the SIMD lanes are independent sub-blocks
// (16 of them: two super-blocks of Q4_K/Q5_K/IQ4_XS, one of Q6_K, 16 IQ4_NL blocks),
// each lane runs ggml's loops in ggml's order with the same float32 operations, so only
// these differ in how they get the same result:
// - ggml's nearest_int (the 1.5*2^23 magic add) followed by a clamp to [lo, hi] is done
//   on the float: t = v + 1.5*2^23, t's bit pattern clamped as an integer to those of
//   1.5*2^23 + lo and + hi, then t - 1.5*2^23. For |v| < 2^22 that is exactly
//   float(clamp(nearest_int(v))) (t is then 1.5*2^23 + round-to-even(v), an integer
//   and a positive float whose bit patterns order like the values). Q4_K/Q5_K check
//   per candidate that every live lane's v stays in that range (from the lane's
//   extremes: v is monotonic in x) and otherwise take the exact integer path; Q6_K's
//   |v| is at most 32.9 by construction.
// - best_index_int8 over kvalues_iq4nl (a binary search, then the nearer of the two
//   neighbours by `x - a < b - x`) is the number of the 15 midpoints (a + b) / 2 that
//   x is not below (NaN: all 15): near a midpoint both differences are exact, so the
//   float comparison is the comparison with the midpoint; checked against the C search
//   on +-3000 ulps around every midpoint and grid value and 2e5 random points. Here it
//   is a 4-step binary search with the midpoints in a permute table.
// - the codes of a sub-block's best candidate are recomputed from its (iscale, min)
//   where they are used at all (only sub-blocks whose final scale is 0 keep them).
#include <immintrin.h>

#include <cfloat>
#include <type_traits>

// GCC 12's AVX-512 intrinsics (unpack, shuffle, min/max, roundscale, vpmovdb in their
// unmasked forms) start from _mm512_undefined_*() and then warn -W(maybe-)uninitialized
// where they are inlined: a false positive of the headers, not of this code.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include "gguf/gguf.h"
#include "gguf/gguf_kquants.h"
#include "gguf/gguf_ops.h"

namespace lowbit {
namespace {

constexpr float kMagic = 12582912.f;  // 1.5 * 2^23

inline __m512i nearest_int16(__m512 v) {  // ggml's nearest_int on 16 lanes, any input
  const __m512 t = _mm512_add_ps(v, _mm512_set1_ps(kMagic));
  return _mm512_sub_epi32(_mm512_and_si512(_mm512_castps_si512(t), _mm512_set1_epi32(0x007fffff)),
                          _mm512_set1_epi32(0x00400000));
}

// float(clamp(nearest_int(v), lo, hi)): exact for any v.
inline __m512 round_clamp_exact(__m512 v, __m512i lo, __m512i hi) {
  return _mm512_cvtepi32_ps(_mm512_max_epi32(lo, _mm512_min_epi32(hi, nearest_int16(v))));
}
// The same for |v| < 2^22 (blo, bhi: the bit patterns of kMagic + lo and kMagic + hi).
inline __m512 round_clamp_fast(__m512 v, __m512i blo, __m512i bhi) {
  const __m512i t = _mm512_castps_si512(_mm512_add_ps(v, _mm512_set1_ps(kMagic)));
  return _mm512_sub_ps(_mm512_castsi512_ps(_mm512_max_epi32(blo, _mm512_min_epi32(bhi, t))),
                       _mm512_set1_ps(kMagic));
}
inline __m512i magic_bits(int v) { return _mm512_set1_epi32(static_cast<int>(f32_bits(kMagic + static_cast<float>(v)))); }

inline bool finite_all(const float* x, size_t n) {  // n a multiple of 16
  __m512i acc = _mm512_setzero_si512();
  const __m512i e = _mm512_set1_epi32(0x7f800000);
  __mmask16 bad = 0;
  for (size_t i = 0; i < n; i += 16) {
    acc = _mm512_and_si512(_mm512_loadu_si512(x + i), e);
    bad |= _mm512_cmpeq_epi32_mask(acc, e);
  }
  return bad == 0;
}

// out[ostride * i] lane j = row j's value i, for 16 rows of 16 floats at base + stride * j.
inline void transpose16(const float* base, int stride, __m512* out, int ostride = 1) {
  __m512 r[16], t[16];
  for (int j = 0; j < 16; ++j) r[j] = _mm512_loadu_ps(base + stride * j);
  for (int k = 0; k < 8; ++k) {  // per 128-bit lane: rows 2k, 2k+1, elements 0,1 / 2,3
    t[2 * k] = _mm512_unpacklo_ps(r[2 * k], r[2 * k + 1]);
    t[2 * k + 1] = _mm512_unpackhi_ps(r[2 * k], r[2 * k + 1]);
  }
  for (int k = 0; k < 4; ++k) {  // r[4k + c], 128-bit lane L: column 4L + c of rows 4k..4k+3
    r[4 * k + 0] = _mm512_shuffle_ps(t[4 * k], t[4 * k + 2], 0x44);
    r[4 * k + 1] = _mm512_shuffle_ps(t[4 * k], t[4 * k + 2], 0xEE);
    r[4 * k + 2] = _mm512_shuffle_ps(t[4 * k + 1], t[4 * k + 3], 0x44);
    r[4 * k + 3] = _mm512_shuffle_ps(t[4 * k + 1], t[4 * k + 3], 0xEE);
  }
  for (int c = 0; c < 4; ++c) {  // a 4x4 transpose of 128-bit lanes
    const __m512 b0 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x44), b1 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xEE);
    const __m512 b2 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x44);
    const __m512 b3 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xEE);
    out[ostride * c] = _mm512_shuffle_f32x4(b0, b2, 0x88);
    out[ostride * (4 + c)] = _mm512_shuffle_f32x4(b0, b2, 0xDD);
    out[ostride * (8 + c)] = _mm512_shuffle_f32x4(b1, b3, 0x88);
    out[ostride * (12 + c)] = _mm512_shuffle_f32x4(b1, b3, 0xDD);
  }
}

// Lane j of X[i] = value i of sub-block j: sub-block j starts at x + stride * j.
template <int kN>
inline void gather_lanes(const float* x, int stride, __m512* X, int ostride = 1) {
  for (int h = 0; h < kN; h += 16) transpose16(x + h, stride, X + ostride * h, ostride);
}

// Two independent left-to-right sums of squares (ggml's sum_x2 loops over a super-block).
inline void sum_sq2(const float* a, const float* b, int n, float* sa, float* sb) {
  float s0 = 0, s1 = 0;
  for (int l = 0; l < n; ++l) {
    s0 += a[l] * a[l];
    s1 += b[l] * b[l];
  }
  *sa = s0;
  *sb = s1;
}

// ---- Q4_K / Q5_K: make_qkx2_quants (ref) / make_qkx3_quants (imatrix), 16 sub-blocks ----

// Per lane after the search: scale, the_min, and the (iscale, min) whose codes are the
// best (iscale 0 for a degenerate sub-block: codes 0).
struct QkxOut {
  alignas(64) float scale[16];
  alignas(64) float min[16];
  alignas(64) float sw[16];
  alignas(64) float lis[16];
  alignas(64) float lmn[16];
};

// make_qkx2_quants / make_qkx3_quants on G groups of 16 lanes, lane j of group g = the
// sub-block of kN values at x + kN * (16 g + j). Q4_K/Q5_K: kN 32 (a group is two
// super-blocks), weights av_x + |x| (kAvX) or the imatrix's; Q2_K: kN 16 (a group is one
// super-block), weights |x| and the absolute error (kMad), or the imatrix's. The groups
// are interleaved: each candidate's sums are long chains of dependent adds, and the next
// candidate depends on this one's outcome, so independent groups are what fill the pipes.
template <int kNmax, int kNstep, bool kX3, int G, int kN = 32, bool kMad = false, bool kAvX = true>
inline void qkx_lanes16(const float* x, const float* qw, const __m512* sigma2, float rmin, float rdelta,
                        QkxOut* o) {
  __m512 X[kN][G], W[kN][G], LA[kN][G];
  const __m512 zero = _mm512_setzero_ps();
  __m512 mn[G], mx[G], sum_w[G], sum_x[G], data_min[G], min0[G], scale[G], lis[G], lmn[G], best[G];
  __mmask16 degenerate[G];
  auto err = [](__m512 diff) { return kMad ? _mm512_abs_ps(diff) : _mm512_mul_ps(diff, diff); };
  const __m512i lo = _mm512_setzero_si512(), hi = _mm512_set1_epi32(kNmax);
  for (int g = 0; g < G; ++g) {
    // transposed straight into X and W (a local copy of 2 kN vectors was spilled anyway)
    auto Xg = [&](int i) -> __m512& { return X[i][g]; };
    auto Wg = [&](int i) -> __m512& { return W[i][g]; };
    gather_lanes<kN>(x + 16 * kN * g, kN, &X[0][g], G);
    if (kX3) {
      gather_lanes<kN>(qw + 16 * kN * g, kN, &W[0][g], G);
      __m512 sw = zero;
      for (int i = 0; i < kN; ++i) {
        Wg(i) = _mm512_mul_ps(Wg(i), _mm512_sqrt_ps(_mm512_add_ps(sigma2[g], _mm512_mul_ps(Xg(i), Xg(i)))));
        sw = _mm512_add_ps(sw, Wg(i));
      }
      _mm512_store_ps(o[g].sw, sw);
    } else if (kAvX) {
      __m512 sx2 = zero;
      for (int i = 0; i < kN; ++i) sx2 = _mm512_add_ps(sx2, _mm512_mul_ps(Xg(i), Xg(i)));
      const __m512 av_x = _mm512_sqrt_ps(_mm512_div_ps(sx2, _mm512_set1_ps(static_cast<float>(kN))));
      for (int i = 0; i < kN; ++i) Wg(i) = _mm512_add_ps(av_x, _mm512_abs_ps(Xg(i)));
    } else {
      for (int i = 0; i < kN; ++i) Wg(i) = _mm512_abs_ps(Xg(i));
    }
    __m512 n = Xg(0), m = Xg(0), sw = Wg(0), sx = _mm512_mul_ps(Wg(0), Xg(0));
    for (int i = 1; i < kN; ++i) {
      n = _mm512_min_ps(Xg(i), n);
      m = _mm512_max_ps(Xg(i), m);
      sw = _mm512_add_ps(sw, Wg(i));
      sx = _mm512_add_ps(sx, _mm512_mul_ps(Wg(i), Xg(i)));
    }
    data_min[g] = n;
    n = _mm512_mask_mov_ps(n, _mm512_cmp_ps_mask(n, zero, _CMP_GT_OQ), zero);
    degenerate[g] = kX3 ? _mm512_cmp_ps_mask(m, n, _CMP_NGT_UQ) : _mm512_cmp_ps_mask(m, n, _CMP_EQ_OQ);
    mn[g] = min0[g] = n;
    mx[g] = m;
    sum_w[g] = sw;
    sum_x[g] = sx;
    const __m512 iscale = _mm512_div_ps(_mm512_set1_ps(static_cast<float>(kNmax)), _mm512_sub_ps(m, n));
    scale[g] = _mm512_div_ps(_mm512_set1_ps(1.0f), iscale);
    lis[g] = iscale;
    lmn[g] = n;
    __m512 b = zero;
    for (int i = 0; i < kN; ++i) {
      const __m512 fl = round_clamp_exact(_mm512_mul_ps(iscale, _mm512_sub_ps(Xg(i), n)), lo, hi);
      const __m512 diff = _mm512_sub_ps(_mm512_add_ps(_mm512_mul_ps(scale[g], fl), n), Xg(i));
      b = _mm512_add_ps(b, _mm512_mul_ps(Wg(i), err(diff)));
    }
    best[g] = b;
  }
  for (int is = 0; is <= kNstep; ++is) {
    const float num = rmin + rdelta * static_cast<float>(is) + static_cast<float>(kNmax);
    __m512 iscale[G];
    // how each live lane's v = iscale * (x - mn) can be rounded: where all of them lie in
    // [-0.5, kNmax + 0.5) the clamp cannot bite, where they lie in (-2^22, 2^22) the
    // float-domain rounding is exact, else ggml's integer path
    bool fast = true, need_lo = false, need_hi = false;
    for (int g = 0; g < G; ++g) {
      const __m512 range = _mm512_sub_ps(mx[g], mn[g]);
      iscale[g] = _mm512_div_ps(_mm512_set1_ps(num), range);
      const __m512 va = _mm512_mul_ps(iscale[g], range);
      const __m512 vb = _mm512_mul_ps(iscale[g], _mm512_sub_ps(data_min[g], mn[g]));
      const __m512 vmin = _mm512_min_ps(va, vb), vmax = _mm512_max_ps(va, vb);
      const __mmask16 live = static_cast<__mmask16>(~degenerate[g]);
      const __mmask16 in_range = _mm512_cmp_ps_mask(vmin, _mm512_set1_ps(-4194304.f), _CMP_GT_OQ) &
                                 _mm512_cmp_ps_mask(vmax, _mm512_set1_ps(4194304.f), _CMP_LT_OQ);
      fast &= (in_range & live) == live;
      need_lo |= (_mm512_cmp_ps_mask(vmin, _mm512_set1_ps(-0.5f), _CMP_GE_OQ) & live) != live;
      need_hi |= (_mm512_cmp_ps_mask(vmax, _mm512_set1_ps(kNmax + 0.5f), _CMP_LT_OQ) & live) != live;
    }
    __m512 sum_l[G], sum_l2[G], sum_xl[G];
    for (int g = 0; g < G; ++g) sum_l[g] = sum_l2[g] = sum_xl[g] = zero;
    auto sum_loop = [&](auto round) {
      for (int i = 0; i < kN; ++i)
        for (int g = 0; g < G; ++g) {
          const __m512 fl = round(_mm512_mul_ps(iscale[g], _mm512_sub_ps(X[i][g], mn[g])));
          LA[i][g] = fl;
          const __m512 wl = _mm512_mul_ps(W[i][g], fl);
          sum_l[g] = _mm512_add_ps(sum_l[g], wl);
          sum_l2[g] = _mm512_add_ps(sum_l2[g], _mm512_mul_ps(wl, fl));
          sum_xl[g] = _mm512_add_ps(sum_xl[g], _mm512_mul_ps(wl, X[i][g]));
        }
    };
    // The float rounding (to nearest even, as the magic add) then a float clamp where one
    // can bite. It keeps the sign of a zero where ggml's int gives +0 (-0.5 < v <= -0):
    // such a code adds only zeros to sums that start at +0, and its error term
    // ((s * L + m) - x)^2 or |.| is the same (the two can differ only in a zero's sign).
    const int rn = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
    const __m512 flo = zero, fhi = _mm512_set1_ps(static_cast<float>(kNmax));
    if (!fast) {
      sum_loop([&](__m512 v) { return round_clamp_exact(v, lo, hi); });
    } else if (need_lo && need_hi) {
      sum_loop([&](__m512 v) { return _mm512_min_ps(_mm512_max_ps(_mm512_roundscale_ps(v, rn), flo), fhi); });
    } else if (need_hi) {
      sum_loop([&](__m512 v) { return _mm512_min_ps(_mm512_roundscale_ps(v, rn), fhi); });
    } else if (need_lo) {
      sum_loop([&](__m512 v) { return _mm512_max_ps(_mm512_roundscale_ps(v, rn), flo); });
    } else {
      sum_loop([&](__m512 v) { return _mm512_roundscale_ps(v, rn); });
    }
    __mmask16 okD[G];
    __m512 this_scale[G], this_min[G];
    unsigned any = 0;
    for (int g = 0; g < G; ++g) {
      const __m512 D = _mm512_sub_ps(_mm512_mul_ps(sum_w[g], sum_l2[g]), _mm512_mul_ps(sum_l[g], sum_l[g]));
      okD[g] = static_cast<__mmask16>(~degenerate[g]) & _mm512_cmp_ps_mask(D, zero, _CMP_GT_OQ);
      any |= okD[g];
      __m512 ts = _mm512_div_ps(_mm512_sub_ps(_mm512_mul_ps(sum_w[g], sum_xl[g]), _mm512_mul_ps(sum_x[g], sum_l[g])), D);
      __m512 tm = _mm512_div_ps(_mm512_sub_ps(_mm512_mul_ps(sum_l2[g], sum_x[g]), _mm512_mul_ps(sum_l[g], sum_xl[g])), D);
      const __mmask16 pos = _mm512_cmp_ps_mask(tm, zero, _CMP_GT_OQ);
      this_min[g] = _mm512_mask_mov_ps(tm, pos, zero);
      this_scale[g] = _mm512_mask_div_ps(ts, pos, sum_xl[g], sum_l2[g]);
    }
    if (!any) continue;
    __m512 cur[G];
    for (int g = 0; g < G; ++g) cur[g] = zero;
    for (int i = 0; i < kN; ++i)
      for (int g = 0; g < G; ++g) {
        const __m512 diff =
            _mm512_sub_ps(_mm512_add_ps(_mm512_mul_ps(this_scale[g], LA[i][g]), this_min[g]), X[i][g]);
        cur[g] = _mm512_add_ps(cur[g], _mm512_mul_ps(W[i][g], err(diff)));
      }
    for (int g = 0; g < G; ++g) {
      // no branch per group: whether a group has a better lane is close to a coin toss
      const __mmask16 better = okD[g] & _mm512_cmp_ps_mask(cur[g], best[g], _CMP_LT_OQ);
      best[g] = _mm512_mask_mov_ps(best[g], better, cur[g]);
      scale[g] = _mm512_mask_mov_ps(scale[g], better, this_scale[g]);
      lis[g] = _mm512_mask_mov_ps(lis[g], better, iscale[g]);
      lmn[g] = _mm512_mask_mov_ps(lmn[g], better, mn[g]);
      mn[g] = _mm512_mask_mov_ps(mn[g], better, this_min[g]);
    }
  }
  for (int g = 0; g < G; ++g) {
    const __m512 sc = _mm512_mask_mov_ps(scale[g], degenerate[g], zero);
    const __m512 m = _mm512_mask_mov_ps(mn[g], degenerate[g], min0[g]);
    _mm512_store_ps(o[g].scale, sc);
    _mm512_store_ps(o[g].min, _mm512_xor_ps(m, _mm512_set1_ps(-0.0f)));  // the_min = -min
    _mm512_store_ps(o[g].lis, _mm512_mask_mov_ps(lis[g], degenerate[g], zero));
    _mm512_store_ps(o[g].lmn, _mm512_mask_mov_ps(lmn[g], degenerate[g], zero));
  }
}

// ggml's second pass: codes from the 6-bit scales and mins; a sub-block whose scale is
// 0 keeps the search's codes (lis, lmn of lane j).
template <int kNmax>
inline void qk45_requantize16(const float* x, const uint8_t* d_in, const uint8_t* dmin_in, const uint8_t* sc,
                              const float* lis_all, const float* lmn_all, uint8_t* L) {
  const float d_all = load_fp16(d_in), m_all = load_fp16(dmin_in);
  const __m512i lo = _mm512_setzero_si512(), hi = _mm512_set1_epi32(kNmax);
  for (int j = 0; j < 8; ++j) {
    uint8_t s, m;
    kq::get_scale_min_k4(j, sc, &s, &m);
    const float d = d_all * static_cast<float>(s);
    if (!d) {
      for (int i = 0; i < 32; ++i)
        L[32 * j + i] = static_cast<uint8_t>(
            kq::imax(0, kq::imin(kNmax, kq::nearest_int(lis_all[j] * (x[32 * j + i] - lmn_all[j])))));
      continue;
    }
    const __m512 dv = _mm512_set1_ps(d), dm = _mm512_set1_ps(m_all * static_cast<float>(m));
    for (int k = 0; k < 32; k += 16) {
      const __m512 v = _mm512_div_ps(_mm512_add_ps(_mm512_loadu_ps(x + 32 * j + k), dm), dv);
      const __m512i l = _mm512_max_epi32(lo, _mm512_min_epi32(hi, nearest_int16(v)));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(L + 32 * j + k), _mm512_cvtepi32_epi8(l));
    }
  }
}

inline void pack_q4_K_vec(const uint8_t* L, BlockQ4_K* y) {
  for (int j = 0; j < 4; ++j) {
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(L + 64 * j));
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(L + 64 * j + 32));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y->qs + 32 * j), _mm256_or_si256(a, _mm256_slli_epi16(b, 4)));
  }
}

// kq::qk45_codes_ref for the two blocks of a group (lanes 0..7 and 8..15), the same bytes:
// d, dmin = fp16(max / 63) of the scales and mins (the largest one above 0, else +0; NaN
// never wins ggml's `>`), the 6-bit codes (uint8_t)nearest_int(63 / max * v) capped at 63.
inline void qk45_codes_ref2(const QkxOut& og, uint8_t* y0, uint8_t* y1) {
  const __m512 zero = _mm512_setzero_ps();
  alignas(16) uint8_t L[2][16];
  alignas(64) float mx63[2][16];
  for (int t = 0; t < 2; ++t) {
    const __m512 v = _mm512_load_ps(t ? og.min : og.scale);
    __m512 m = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, v, _CMP_ORD_Q), v);
    m = _mm512_max_ps(m, _mm512_shuffle_f32x4(m, m, 0xB1));  // max over each 8-lane half
    m = _mm512_max_ps(m, _mm512_shuffle_ps(m, m, 0x4E));
    m = _mm512_max_ps(m, _mm512_shuffle_ps(m, m, 0xB1));
    const __mmask16 pos = _mm512_cmp_ps_mask(m, zero, _CMP_GT_OQ);
    m = _mm512_maskz_mov_ps(pos, m);  // +0 where no value is above 0
    const __m512 inv = _mm512_maskz_div_ps(pos, _mm512_set1_ps(63.f), m);
    const __m512i l = _mm512_min_epu32(_mm512_and_si512(nearest_int16(_mm512_mul_ps(inv, v)), _mm512_set1_epi32(0xFF)),
                                       _mm512_set1_epi32(63));
    _mm_store_si128(reinterpret_cast<__m128i*>(L[t]), _mm512_cvtepi32_epi8(l));
    _mm512_store_ps(mx63[t], _mm512_div_ps(m, _mm512_set1_ps(63.f)));
  }
  for (int h = 0; h < 2; ++h) {
    uint8_t* y = h ? y1 : y0;
    for (int t = 0; t < 2; ++t) {
      const uint16_t dh = _cvtss_sh(mx63[t][8 * h], _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      y[2 * t] = static_cast<uint8_t>(dh);
      y[2 * t + 1] = static_cast<uint8_t>(dh >> 8);
    }
    uint8_t* sc = y + 4;
    std::memset(sc, 0, 12);
    for (int j = 0; j < 8; ++j) kq::pack_scale_min_k4(j, L[0][8 * h + j], L[1][8 * h + j], sc);
  }
}

// 2G super-blocks (their weights at qw or nullptr) -> 2G blocks.
template <int kNmax, int G>
inline void qk45_group(const float* x, const float* qw, uint8_t* out) {
  constexpr size_t kBytes = kNmax == 15 ? sizeof(BlockQ4_K) : sizeof(BlockQ5_K);
  QkxOut o[G];
  __m512 sigma2[G];
  if (qw) {
    for (int g = 0; g < G; ++g) {
      float s0, s1;
      sum_sq2(x + 512 * g, x + 512 * g + kQK_K, kQK_K, &s0, &s1);
      const float sg0 = 2 * s0 / kQK_K, sg1 = 2 * s1 / kQK_K;
      sigma2[g] = _mm512_mask_mov_ps(_mm512_set1_ps(sg0), 0xFF00, _mm512_set1_ps(sg1));
    }
    qkx_lanes16<kNmax, 36, true, G>(x, qw, sigma2, -0.9f, 0.05f, o);
  } else if (kNmax == 15) {
    qkx_lanes16<kNmax, 20, false, G>(x, nullptr, sigma2, -1.f, 0.1f, o);
  } else {
    qkx_lanes16<kNmax, 15, false, G>(x, nullptr, sigma2, -0.5f, 0.1f, o);
  }
  if (!qw)
    for (int g = 0; g < G; ++g) qk45_codes_ref2(o[g], out + 2 * g * kBytes, out + (2 * g + 1) * kBytes);
  for (int b = 0; b < 2 * G; ++b) {
    const QkxOut& og = o[b / 2];
    const int h = b % 2;
    uint8_t* y = out + b * kBytes;  // d, dmin, scales[12] lead both block types
    uint8_t* sc = y + 4;
    if (qw) {
      std::memset(sc, 0, 12);
      kq::qk45_codes_imatrix(og.scale + 8 * h, og.min + 8 * h, og.sw + 8 * h, y, y + 2, sc);
    }
    alignas(32) uint8_t L[kQK_K];
    qk45_requantize16<kNmax>(x + b * kQK_K, y, y + 2, sc, og.lis + 8 * h, og.lmn + 8 * h, L);
    if (kNmax == 15) pack_q4_K_vec(L, reinterpret_cast<BlockQ4_K*>(y));
    else kq::pack_q5_K(L, reinterpret_cast<BlockQ5_K*>(y));
  }
}
template <int kNmax>
inline void qk45_pair(const float* x, const float* qw, uint8_t* out) { qk45_group<kNmax, 1>(x, qw, out); }
template <int kNmax>
inline void qk45_quad(const float* x, const float* qw, uint8_t* out) { qk45_group<kNmax, 2>(x, qw, out); }
template <int kNmax>
inline void qk45_oct(const float* x, const float* qw, uint8_t* out) { qk45_group<kNmax, 4>(x, qw, out); }

// The kernel-table entry for a format whose blocks go two at a time (and eight, then
// four at a time where kWide): an odd last block runs as a pair with a copy of itself.
using BlocksFn = void (*)(const float*, const float*, uint8_t*);
template <size_t kBlock, size_t kBytes, BlocksFn kPair, bool kWide = false, BlocksFn kQuad = kPair,
          BlocksFn kOct = kPair>
bool quantize_pairs(const float* x, size_t nblocks, const float* qw, uint8_t* out) {
  if (!finite_all(x, nblocks * kBlock)) return false;
  size_t i = 0;
  if (kWide) {
    for (; i + 8 <= nblocks; i += 8) kOct(x + i * kBlock, qw ? qw + i * kBlock : nullptr, out + i * kBytes);
    for (; i + 4 <= nblocks; i += 4) kQuad(x + i * kBlock, qw ? qw + i * kBlock : nullptr, out + i * kBytes);
  }
  for (; i + 2 <= nblocks; i += 2) kPair(x + i * kBlock, qw ? qw + i * kBlock : nullptr, out + i * kBytes);
  if (i < nblocks) {
    alignas(64) float xx[2 * kBlock], ww[2 * kBlock];
    uint8_t yy[2 * kBytes];
    std::memcpy(xx, x + i * kBlock, kBlock * 4);
    std::memcpy(xx + kBlock, x + i * kBlock, kBlock * 4);
    if (qw) {
      std::memcpy(ww, qw + i * kBlock, kBlock * 4);
      std::memcpy(ww + kBlock, qw + i * kBlock, kBlock * 4);
    }
    kPair(xx, qw ? ww : nullptr, yy);
    std::memcpy(out + i * kBytes, yy, kBytes);
  }
  return true;
}

// ---- Q2_K: make_qkx2_quants (nmax 3, absolute error) / make_qkx3_quants, 16 sub-blocks of 16 ----

// G super-blocks, one group of 16 lanes each.
template <int G>
inline void q2_K_group(const float* x, const float* qw, uint8_t* out) {
  QkxOut o[G];
  __m512 sigma2[G];
  if (qw) {
    for (int g = 0; g < G; ++g) sigma2[g] = _mm512_set1_ps(kq::sum_sq(x + kQK_K * g, kQK_K) / kQK_K);
    qkx_lanes16<3, 36, true, G, 16, false, false>(x, qw, sigma2, -0.9f, 0.05f, o);
  } else {
    qkx_lanes16<3, 15, false, G, 16, true, false>(x, nullptr, sigma2, -0.5f, 0.1f, o);
  }
  const __m512i lo = _mm512_setzero_si512(), hi = _mm512_set1_epi32(3);
  for (int g = 0; g < G; ++g) {
    BlockQ2_K* y = reinterpret_cast<BlockQ2_K*>(out + sizeof(BlockQ2_K) * g);
    const float* xs = x + kQK_K * g;
    if (qw) kq::q2_K_codes_imatrix(o[g].scale, o[g].min, o[g].sw, y);
    else kq::q2_K_codes_ref(o[g].scale, o[g].min, y);
    // q2k_requantize; a sub-block whose scale is 0 keeps the search's codes
    const float dm_all = load_fp16(y->d), mm_all = load_fp16(y->dmin);
    alignas(32) uint8_t L[kQK_K];
    for (int j = 0; j < 16; ++j) {
      const float d = dm_all * static_cast<float>(y->scales[j] & 0xF);
      if (!d) {
        for (int i = 0; i < 16; ++i)
          L[16 * j + i] = static_cast<uint8_t>(
              kq::imax(0, kq::imin(3, kq::nearest_int(o[g].lis[j] * (xs[16 * j + i] - o[g].lmn[j])))));
        continue;
      }
      const float m = mm_all * static_cast<float>(y->scales[j] >> 4);
      const __m512 v = _mm512_div_ps(_mm512_add_ps(_mm512_loadu_ps(xs + 16 * j), _mm512_set1_ps(m)), _mm512_set1_ps(d));
      _mm_store_si128(reinterpret_cast<__m128i*>(L + 16 * j),
                      _mm512_cvtepi32_epi8(_mm512_max_epi32(lo, _mm512_min_epi32(hi, nearest_int16(v)))));
    }
    for (int h = 0; h < 2; ++h) {  // pack_2bit: codes j, j+32, j+64, j+96 of each half in one byte
      const __m256i* p = reinterpret_cast<const __m256i*>(L + 128 * h);
      const __m256i q = _mm256_or_si256(
          _mm256_or_si256(_mm256_load_si256(p), _mm256_slli_epi16(_mm256_load_si256(p + 1), 2)),
          _mm256_or_si256(_mm256_slli_epi16(_mm256_load_si256(p + 2), 4), _mm256_slli_epi16(_mm256_load_si256(p + 3), 6)));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(y->qs + 32 * h), q);
    }
  }
}

bool quantize_q2_K_avx512(const float* x, size_t nblocks, const float* qw, uint8_t* out) {
  if (!finite_all(x, nblocks * kQK_K)) return false;
  size_t i = 0;
  for (; i + 4 <= nblocks; i += 4)
    q2_K_group<4>(x + i * kQK_K, qw ? qw + i * kQK_K : nullptr, out + i * sizeof(BlockQ2_K));
  for (; i < nblocks; ++i) q2_K_group<1>(x + i * kQK_K, qw ? qw + i * kQK_K : nullptr, out + i * sizeof(BlockQ2_K));
  return true;
}

// ---- Q3_K: make_q3_quants (nmax 4, sweeps of one-code refinement), 16 sub-blocks of 16 ----

// G super-blocks, one group of 16 lanes each: make_q3_quants's scales (0 for an all-tiny
// sub-block) and codes 0..7. Each lane runs ggml's sweeps in order (its running sums
// change code by code); a lane stops where ggml's loop breaks (a sweep without change).
template <int G>
inline void q3_K_search(const float* x, float* scales, uint8_t* L) {
  __m512 X[16][G], W[16][G], WX[16][G], LF[16][G];
  const __m512 zero = _mm512_setzero_ps();
  const __m512i lo = _mm512_set1_epi32(-4), hi = _mm512_set1_epi32(3);
  const __m512i blo = magic_bits(-4), bhi = magic_bits(3);
  __m512 sumlx[G], suml2[G];
  __mmask16 live[G], active[G];
  for (int g = 0; g < G; ++g) {
    __m512 Xg[16];
    gather_lanes<16>(x + kQK_K * g, 16, Xg);
    __m512 amax = zero, max = zero;
    for (int i = 0; i < 16; ++i) {
      const __m512 ax = _mm512_abs_ps(Xg[i]);
      const __mmask16 gt = _mm512_cmp_ps_mask(ax, amax, _CMP_GT_OQ);
      amax = _mm512_mask_mov_ps(amax, gt, ax);
      max = _mm512_mask_mov_ps(max, gt, Xg[i]);
    }
    live[g] = active[g] = _mm512_cmp_ps_mask(amax, _mm512_set1_ps(kq::kGroupMaxEps), _CMP_NLT_UQ);
    const __m512 iscale = _mm512_div_ps(_mm512_set1_ps(-4.0f), max);
    __m512 a = zero, b = zero;
    for (int i = 0; i < 16; ++i) {
      X[i][g] = Xg[i];
      W[i][g] = _mm512_mul_ps(Xg[i], Xg[i]);
      WX[i][g] = _mm512_mul_ps(W[i][g], Xg[i]);
      // |iscale * x| <= 4 in a live lane: the fast rounding is exact
      const __m512 fl = round_clamp_fast(_mm512_mul_ps(iscale, Xg[i]), blo, bhi);
      LF[i][g] = fl;
      a = _mm512_add_ps(a, _mm512_mul_ps(WX[i][g], fl));
      b = _mm512_add_ps(b, _mm512_mul_ps(_mm512_mul_ps(W[i][g], fl), fl));
    }
    sumlx[g] = a;
    suml2[g] = b;
  }
  for (int itry = 0; itry < 5; ++itry) {
    __mmask16 changed[G];
    unsigned any = 0;
    for (int g = 0; g < G; ++g) changed[g] = 0;
    for (int i = 0; i < 16; ++i)
      for (int g = 0; g < G; ++g) {
        const __m512 li = LF[i][g];
        const __m512 slx = _mm512_sub_ps(sumlx[g], _mm512_mul_ps(WX[i][g], li));
        __mmask16 m = active[g] & _mm512_cmp_ps_mask(slx, zero, _CMP_GT_OQ);
        const __m512 sl2 = _mm512_sub_ps(suml2[g], _mm512_mul_ps(_mm512_mul_ps(W[i][g], li), li));
        const __m512 nl = round_clamp_exact(_mm512_div_ps(_mm512_mul_ps(X[i][g], sl2), slx), lo, hi);
        m &= _mm512_cmp_ps_mask(nl, li, _CMP_NEQ_OQ);
        const __m512 slx2 = _mm512_add_ps(slx, _mm512_mul_ps(WX[i][g], nl));
        const __m512 sl22 = _mm512_add_ps(sl2, _mm512_mul_ps(_mm512_mul_ps(W[i][g], nl), nl));
        m &= _mm512_cmp_ps_mask(sl22, zero, _CMP_GT_OQ) &
             _mm512_cmp_ps_mask(_mm512_mul_ps(_mm512_mul_ps(slx2, slx2), suml2[g]),
                                _mm512_mul_ps(_mm512_mul_ps(sumlx[g], sumlx[g]), sl22), _CMP_GT_OQ);
        LF[i][g] = _mm512_mask_mov_ps(li, m, nl);
        sumlx[g] = _mm512_mask_mov_ps(sumlx[g], m, slx2);
        suml2[g] = _mm512_mask_mov_ps(suml2[g], m, sl22);
        changed[g] |= m;
      }
    for (int g = 0; g < G; ++g) {
      active[g] &= changed[g];
      any |= active[g];
    }
    if (!any) break;
  }
  const __m512i off = _mm512_set1_epi32(4);
  for (int g = 0; g < G; ++g) {
    const __mmask16 use = live[g] & _mm512_cmp_ps_mask(suml2[g], zero, _CMP_GT_OQ);
    _mm512_storeu_ps(scales + 16 * g, _mm512_maskz_div_ps(use, sumlx[g], suml2[g]));
    alignas(64) int32_t codes[16][16];
    for (int i = 0; i < 16; ++i)
      _mm512_store_si512(codes[i], _mm512_maskz_add_epi32(live[g], _mm512_cvtps_epi32(LF[i][g]), off));
    for (int j = 0; j < 16; ++j)
      for (int i = 0; i < 16; ++i) L[kQK_K * g + 16 * j + i] = static_cast<uint8_t>(codes[i][j]);
  }
}

// The second pass of Q3_K (codes from the 6-bit scales; a sub-block whose scale is 0
// keeps the search's codes in L) and the packing: hmask bit k of byte m = bit 2 of code
// 32 k + m, qs = the low two bits as Q2_K packs them.
inline void q3_K_finish(const float* x, BlockQ3_K* y, uint8_t* L) {
  const float d_all = load_fp16(y->d);
  const __m512i lo = _mm512_set1_epi32(-4), hi = _mm512_set1_epi32(3), off = _mm512_set1_epi32(4);
  for (int j = 0; j < 16; ++j) {
    const float d = d_all * static_cast<float>(kq::unpack_scale_q3(j, y->scales));
    if (!d) continue;
    const __m512 v = _mm512_div_ps(_mm512_loadu_ps(x + 16 * j), _mm512_set1_ps(d));
    const __m512i l = _mm512_add_epi32(_mm512_max_epi32(lo, _mm512_min_epi32(hi, nearest_int16(v))), off);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(L + 16 * j), _mm512_cvtepi32_epi8(l));
  }
  const __m256i one = _mm256_set1_epi8(1), three = _mm256_set1_epi8(3);
  __m256i hm = _mm256_setzero_si256(), u[8];
  for (int k = 0; k < 8; ++k) {
    const __m256i r = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(L + 32 * k));
    hm = _mm256_or_si256(hm, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(r, 2), one), k));
    u[k] = _mm256_and_si256(r, three);
  }
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(y->hmask), hm);
  for (int h = 0; h < 2; ++h) {
    const __m256i q = _mm256_or_si256(_mm256_or_si256(u[4 * h], _mm256_slli_epi16(u[4 * h + 1], 2)),
                                      _mm256_or_si256(_mm256_slli_epi16(u[4 * h + 2], 4), _mm256_slli_epi16(u[4 * h + 3], 6)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y->qs + 32 * h), q);
  }
}

template <int G>
inline void q3_K_group(const float* x, uint8_t* out) {
  alignas(64) float scales[16 * G];
  alignas(64) uint8_t L[kQK_K * G];
  q3_K_search<G>(x, scales, L);
  for (int g = 0; g < G; ++g) {
    BlockQ3_K* y = reinterpret_cast<BlockQ3_K*>(out + sizeof(BlockQ3_K) * g);
    std::memset(y->scales, 0, 12);
    kq::q3_K_codes_ref(scales + 16 * g, y);
    q3_K_finish(x + kQK_K * g, y, L + kQK_K * g);
  }
}

// The imatrix path (quantize_row_q3_K_impl) stays the scalar code.
bool quantize_q3_K_avx512(const float* x, size_t nblocks, const float* qw, uint8_t* out) {
  if (!finite_all(x, nblocks * kQK_K)) return false;
  if (qw) {
    for (size_t i = 0; i < nblocks; ++i) kq::quantize_block_q3_K(x + i * kQK_K, qw + i * kQK_K, out + i * sizeof(BlockQ3_K));
    return true;
  }
  size_t i = 0;
  for (; i + 4 <= nblocks; i += 4) q3_K_group<4>(x + i * kQK_K, out + i * sizeof(BlockQ3_K));
  for (; i < nblocks; ++i) q3_K_group<1>(x + i * kQK_K, out + i * sizeof(BlockQ3_K));
  return true;
}

// ---- Q6_K: make_qx_quants (rmse_type 1, nmax 32) with the 16 sub-blocks of 16 in lanes ----

// Four super-blocks at once, each a vector of 16 sub-blocks (lanes): 16x16 transposes
// in; the 19 candidates two at a time over the 16 values (each candidate's two sums are
// chains of dependent adds, so 8 independent chains per pass fill the pipes); then
// q6_K_finish's requantization and packing in vectors. Per value and candidate the four
// multiplies ggml fixes (iscale * x, wx * l, w * l, (w * l) * l) share Zen 5's two
// multiply pipes, and the rounding, the clamp and the two adds its two add pipes.

// make_qx_quants' 19 candidate iscales: c = 0 the initial -nmax / max, then is = -9..9 without 0.
inline float q6_num(int c) {
  const int is = c <= 9 ? c - 10 : c - 9;
  return c == 0 ? -32.0f : -(32.0f + 0.1f * static_cast<float>(is));
}
constexpr int kQ6Cands = 19;

// The search state of G super-blocks (lane = sub-block) and their transposed inputs.
template <int G>
struct Q6Search {
  __m512 X[16][G], W[16][G], WX[16][G];
  __m512 max[G], scale[G], best[G], lis[G];
};

// The sums of candidates c0..c0+K-1 for the G super-blocks, then their tests in order.
// The codes: float(clamp(nearest_int(v), -32, 31)) is the float rounding of v (to nearest
// even, as the magic add) clamped as a float. v = iscale * x is finite in a live lane,
// |v| <= (32 + 0.1 is)(1 + 2^-22), so it can round below -32 only for is >= 5
// (candidates 14..18), and above 31 only for is >= -5 (candidates 0 and 5..18). The
// float rounding keeps the sign of a zero (x = -0, or -0.5 < v < 0) where ggml's int
// gives +0: such a code only adds zeros to sums that start at +0, and the codes
// themselves are recomputed from the best iscale later. (The clamps as integer min on
// the bit patterns, off the add pipes that also round and sum, measured slower: 2.46
// against 2.37 cycles per value and candidate in a loop of these alone.)
template <int G, int K>
inline void q6_block(Q6Search<G>& s, int c0) {
  const __m512 zero = _mm512_setzero_ps();
  __m512 isc[K][G], slx[K][G], sl2[K][G];
  for (int k = 0; k < K; ++k)
    for (int g = 0; g < G; ++g) {
      isc[k][g] = _mm512_div_ps(_mm512_set1_ps(q6_num(c0 + k)), s.max[g]);
      slx[k][g] = sl2[k][g] = zero;
    }
  const __m512 flo = _mm512_set1_ps(-32.f), fhi = _mm512_set1_ps(31.f);
  auto sums = [&](auto lo, auto hi) {
    for (int i = 0; i < 16; ++i)
      for (int g = 0; g < G; ++g) {
        const __m512 x = s.X[i][g], w = s.W[i][g], wx = s.WX[i][g];
        for (int k = 0; k < K; ++k) {
          __m512 f = _mm512_roundscale_ps(_mm512_mul_ps(isc[k][g], x), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
          if (decltype(lo)::value) f = _mm512_max_ps(f, flo);
          if (decltype(hi)::value) f = _mm512_min_ps(f, fhi);
          slx[k][g] = _mm512_add_ps(slx[k][g], _mm512_mul_ps(wx, f));
          sl2[k][g] = _mm512_add_ps(sl2[k][g], _mm512_mul_ps(_mm512_mul_ps(w, f), f));
        }
      }
  };
  // above 31 only for is >= -5 (candidates 0 and 5..18), below -32 only for is >= 5 (14..18)
  bool need_hi = false, need_lo = false;
  for (int k = 0; k < K; ++k) {
    need_hi |= c0 + k == 0 || c0 + k >= 5;
    need_lo |= c0 + k >= 14;
  }
  if (need_lo) sums(std::true_type(), std::true_type());
  else if (need_hi) sums(std::false_type(), std::true_type());
  else sums(std::false_type(), std::false_type());
  for (int k = 0; k < K; ++k) {
    if (c0 + k == 0) {
      for (int g = 0; g < G; ++g) {
        s.scale[g] = _mm512_maskz_div_ps(_mm512_cmp_ps_mask(sl2[0][g], zero, _CMP_NEQ_UQ), slx[0][g], sl2[0][g]);
        s.best[g] = _mm512_mul_ps(s.scale[g], slx[0][g]);
        s.lis[g] = isc[0][g];
      }
      continue;
    }
    // ggml: if (suml2 > 0 && sumlx*sumlx > best*suml2) { scale = sumlx/suml2; best = scale*sumlx; }
    // The candidate's scale and best are computed in every lane, before the test: the
    // divisions then hang off no chain of tests (a lane is better for about 1 in 20
    // candidates, but some lane of a vector for most of them).
    for (int g = 0; g < G; ++g) {
      const __m512 q = _mm512_div_ps(slx[k][g], sl2[k][g]);
      const __mmask16 better =
          _mm512_cmp_ps_mask(sl2[k][g], zero, _CMP_GT_OQ) &
          _mm512_cmp_ps_mask(_mm512_mul_ps(slx[k][g], slx[k][g]), _mm512_mul_ps(s.best[g], sl2[k][g]), _CMP_GT_OQ);
      s.lis[g] = _mm512_mask_mov_ps(s.lis[g], better, isc[k][g]);
      s.scale[g] = _mm512_mask_mov_ps(s.scale[g], better, q);
      s.best[g] = _mm512_mask_mul_ps(s.best[g], better, q, slx[k][g]);
    }
  }
}

template <int G>
void q6_K_finish(const float* x, const __m512* S, const __m512* LIS, const __mmask16* zero_lane, uint8_t* out);

// G super-blocks at once (x, qw: G * 256 values), each a vector of 16 sub-blocks; false
// if x holds NaN or Inf (then nothing of the G blocks is written).
template <int G>
inline bool q6_K_group(const float* x, const float* qw, uint8_t* out) {
  Q6Search<G> s;
  const __m512 zero = _mm512_setzero_ps();
  __mmask16 zero_lane[G];
  __m512i bits = _mm512_setzero_si512();  // the largest |x| bit pattern: finite below 0x7f800000
  for (int g = 0; g < G; ++g) {
    __m512 m[16];  // the values, then the tree below (in registers: nothing else is live)
    gather_lanes<16>(x + kQK_K * g, 16, m);
    if (qw) gather_lanes<16>(qw + kQK_K * g, 16, &s.W[0][0] + g, G);
    for (int i = 0; i < 16; ++i) {
      bits = _mm512_max_epu32(bits, _mm512_castps_si512(_mm512_abs_ps(m[i])));
      const __m512 w = qw ? s.W[i][g] : _mm512_mul_ps(m[i], m[i]);
      s.X[i][g] = m[i];
      s.W[i][g] = w;
      s.WX[i][g] = _mm512_mul_ps(w, m[i]);
    }
    // ggml's max: the first value of largest magnitude, as a tree of (a, b) -> |b| > |a| ? b : a
    // with a the earlier values (x is finite here)
#pragma GCC unroll 4
    for (int w = 1; w < 16; w *= 2)
#pragma GCC unroll 8
      for (int i = 0; i + w < 16; i += 2 * w)
        m[i] = _mm512_mask_mov_ps(m[i], _mm512_cmp_ps_mask(_mm512_abs_ps(m[i + w]), _mm512_abs_ps(m[i]), _CMP_GT_OQ), m[i + w]);
    s.max[g] = m[0];
    zero_lane[g] = _mm512_cmp_ps_mask(_mm512_abs_ps(m[0]), _mm512_set1_ps(kq::kGroupMaxEps), _CMP_LT_OQ);
  }
  if (_mm512_cmpge_epu32_mask(bits, _mm512_set1_epi32(0x7f800000))) return false;
  constexpr int K = 2;  // candidates per pass over the values
  int c0 = 0;
  for (; c0 + K <= kQ6Cands; c0 += K) q6_block<G, K>(s, c0);
  if (kQ6Cands % K) q6_block<G, (kQ6Cands % K ? kQ6Cands % K : 1)>(s, c0);
  __m512 S[G];
  for (int g = 0; g < G; ++g) S[g] = _mm512_mask_mov_ps(s.scale[g], zero_lane[g], zero);
  q6_K_finish<G>(x, S, s.lis, zero_lane, out);
  return true;
}

// 64 codes (0..63) of four vectors of 16 int32, in order, as bytes.
inline __m512i q6_bytes64(__m512i c0, __m512i c1, __m512i c2, __m512i c3) {
  // packs interleave per 128-bit lane: dword 4L + k of q holds values 4L..4L+3 of c_k
  const __m512i q = _mm512_packus_epi16(_mm512_packus_epi32(c0, c1), _mm512_packus_epi32(c2, c3));
  return _mm512_permutexvar_epi32(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), q);
}

// q6_K_finish on G super-blocks, the scales in lanes: S the 16 sub-block scales (0 in
// the all-tiny lanes), LIS the iscale of each one's best codes. In phases over the G
// super-blocks, so that their chains of scalar divisions overlap.
template <int G>
void q6_K_finish(const float* x, const __m512* S, const __m512* LIS, const __mmask16* zero_lane, uint8_t* out) {
  float iscale[G];
  bool live[G];
  for (int g = 0; g < G; ++g) {
    // ggml's max_scale: the first scale of largest magnitude (a NaN one never wins `>`)
    const __m512 aS = _mm512_abs_ps(S[g]);
    const __mmask16 ord = _mm512_cmp_ps_mask(aS, aS, _CMP_ORD_Q);
    const float max_abs_scale = _mm512_mask_reduce_max_ps(ord, aS);  // -Inf if none
    live[g] = max_abs_scale >= kq::kGroupMaxEps;
    if (!live[g]) continue;
    const __mmask16 at = _mm512_mask_cmp_ps_mask(ord, aS, _mm512_set1_ps(max_abs_scale), _CMP_EQ_OQ);
    const float max_scale = _mm512_cvtss_f32(_mm512_maskz_compress_ps(static_cast<__mmask16>(at & -at), S[g]));
    iscale[g] = -128.f / max_scale;
  }
  alignas(64) float D[G][16];
  __mmask16 dzero[G];
  for (int g = 0; g < G; ++g) {
    BlockQ6_K* y = reinterpret_cast<BlockQ6_K*>(out + sizeof(BlockQ6_K) * g);
    if (!live[g]) continue;
    // GGML_FP32_TO_FP16 and back: F16C's conversions give the same bits for every float
    const uint16_t dh = _cvtss_sh(1 / iscale[g], _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    y->d[0] = static_cast<uint8_t>(dh);
    y->d[1] = static_cast<uint8_t>(dh >> 8);
    // y->scales: (int8_t)MIN(127, nearest_int(iscale * scale))
    const __m128i qs8 = _mm512_cvtepi32_epi8(
        _mm512_min_epi32(_mm512_set1_epi32(127), nearest_int16(_mm512_mul_ps(_mm512_set1_ps(iscale[g]), S[g]))));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y->scales), qs8);
    const __m512 Dv = _mm512_mul_ps(_mm512_set1_ps(_cvtsh_ss(dh)), _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(qs8)));
    _mm512_store_ps(D[g], Dv);
    dzero[g] = _mm512_cmp_ps_mask(Dv, _mm512_setzero_ps(), _CMP_EQ_OQ);
  }
  const __m512i lo = _mm512_set1_epi32(-32), hi = _mm512_set1_epi32(31), off = _mm512_set1_epi32(32);
  const __m512i m4 = _mm512_set1_epi8(0x0F), m3 = _mm512_set1_epi8(0x03), m30 = _mm512_set1_epi8(0x30);
  for (int g = 0; g < G; ++g) {
    BlockQ6_K* y = reinterpret_cast<BlockQ6_K*>(out + sizeof(BlockQ6_K) * g);
    if (!live[g]) {
      std::memset(y, 0, sizeof(BlockQ6_K));
      continue;
    }
    const float* xg = x + kQK_K * g;
    __m512i c[16];
    for (int j = 0; j < 16; ++j) {
      const __m512 xj = _mm512_loadu_ps(xg + 16 * j);
      if ((dzero[g] >> j) & 1) {  // make_qx_quants' codes (0 for an all-tiny sub-block)
        alignas(64) float lis_a[16];
        _mm512_store_ps(lis_a, LIS[g]);
        const __m512i l = _mm512_add_epi32(
            _mm512_max_epi32(lo, _mm512_min_epi32(hi, nearest_int16(_mm512_mul_ps(_mm512_set1_ps(lis_a[j]), xj)))), off);
        c[j] = (zero_lane[g] >> j) & 1 ? _mm512_setzero_si512() : l;
        continue;
      }
      const __m512 v = _mm512_div_ps(xj, _mm512_set1_ps(D[g][j]));
      c[j] = _mm512_add_epi32(_mm512_max_epi32(lo, _mm512_min_epi32(hi, nearest_int16(v))), off);
    }
    for (int n = 0; n < 2; ++n) {
      // A: codes 128n .. +63, B: 128n + 64 .. +127; ql[64n + l] = A[l] & 15 | (B[l] & 15) << 4,
      // qh[32n + l] = the top 2 bits of A[l], A[l + 32], B[l], B[l + 32] in that order
      const __m512i A = q6_bytes64(c[8 * n], c[8 * n + 1], c[8 * n + 2], c[8 * n + 3]);
      const __m512i B = q6_bytes64(c[8 * n + 4], c[8 * n + 5], c[8 * n + 6], c[8 * n + 7]);
      _mm512_storeu_si512(y->ql + 64 * n, _mm512_or_si512(_mm512_and_si512(A, m4), _mm512_slli_epi16(_mm512_and_si512(B, m4), 4)));
      const __m512i H = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(A, 4), m3), _mm512_and_si512(B, m30));
      const __m256i qh = _mm256_or_si256(_mm512_castsi512_si256(H), _mm256_slli_epi16(_mm512_extracti64x4_epi64(H, 1), 2));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(y->qh + 32 * n), qh);
    }
  }
}

bool quantize_q6_K_avx512(const float* x, size_t nblocks, const float* qw, uint8_t* out) {
  size_t i = 0;
  bool ok = true;
  for (; i + 4 <= nblocks && ok; i += 4)
    ok = q6_K_group<4>(x + i * kQK_K, qw ? qw + i * kQK_K : nullptr, out + i * sizeof(BlockQ6_K));
  for (; i + 2 <= nblocks && ok; i += 2)
    ok = q6_K_group<2>(x + i * kQK_K, qw ? qw + i * kQK_K : nullptr, out + i * sizeof(BlockQ6_K));
  for (; i < nblocks && ok; ++i) ok = q6_K_group<1>(x + i * kQK_K, qw ? qw + i * kQK_K : nullptr, out + i * sizeof(BlockQ6_K));
  return ok;
}

// ---- IQ4_NL / IQ4_XS: quantize_row_iq4_nl_impl's search (ntry 7), 16 sub-blocks of 32 ----

// kvalues_iq4nl[best_index_int8(v)]: the value whose index is the number of midpoints
// v is not below (NaN: 15), by a 4-step binary search; *idx gets the index.
inline __m512 iq4_value16(__m512 v, __m512i* idx) {
  const __m512 t2 = _mm512_setr_ps(-57.f, 0, 0, 0, 0, 0, 0, 0, 45.5f, 0, 0, 0, 0, 0, 0, 0);
  const __m512 t3 = _mm512_setr_ps(-93.5f, 0, 0, 0, -28.5f, 0, 0, 0, 19.f, 0, 0, 0, 79.f, 0, 0, 0);
  const __m512 t4 = _mm512_setr_ps(-115.5f, 0, -74.f, 0, -42.f, 0, -16.f, 0, 7.f, 0, 31.5f, 0, 61.f, 0, 101.f, 0);
  const __m512 vals = _mm512_setr_ps(-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113);
  __m512i i = _mm512_maskz_mov_epi32(_mm512_cmp_ps_mask(v, _mm512_set1_ps(-4.5f), _CMP_NLT_UQ), _mm512_set1_epi32(8));
  i = _mm512_mask_add_epi32(i, _mm512_cmp_ps_mask(v, _mm512_permutexvar_ps(i, t2), _CMP_NLT_UQ), i, _mm512_set1_epi32(4));
  i = _mm512_mask_add_epi32(i, _mm512_cmp_ps_mask(v, _mm512_permutexvar_ps(i, t3), _CMP_NLT_UQ), i, _mm512_set1_epi32(2));
  i = _mm512_mask_add_epi32(i, _mm512_cmp_ps_mask(v, _mm512_permutexvar_ps(i, t4), _CMP_NLT_UQ), i, _mm512_set1_epi32(1));
  *idx = i;
  return _mm512_permutexvar_ps(i, vals);
}

// The 16 lanes' scales (0 for an all-tiny sub-block). X[i], W[i]: value i of each.
inline __m512 iq4_fit16(const __m512* X, const __m512* W) {
  const __m512 zero = _mm512_setzero_ps();
  __m512 amax = zero, max = zero;
  for (int i = 0; i < 32; ++i) {
    const __m512 ax = _mm512_abs_ps(X[i]);
    const __mmask16 gt = _mm512_cmp_ps_mask(ax, amax, _CMP_GT_OQ);
    amax = _mm512_mask_mov_ps(amax, gt, ax);
    max = _mm512_mask_mov_ps(max, gt, X[i]);
  }
  const __mmask16 zero_lane = _mm512_cmp_ps_mask(amax, _mm512_set1_ps(kq::kGroupMaxEps), _CMP_LT_OQ);
  auto sums2 = [&](__m512 id0, __m512 id1, __m512* a0, __m512* b0, __m512* a1, __m512* b1) {
    __m512 s0 = zero, t0 = zero, s1 = zero, t1 = zero;
    __m512i dummy;
    for (int i = 0; i < 32; ++i) {
      const __m512 q0 = iq4_value16(_mm512_mul_ps(id0, X[i]), &dummy);
      const __m512 q1 = iq4_value16(_mm512_mul_ps(id1, X[i]), &dummy);
      const __m512 w0 = _mm512_mul_ps(W[i], q0), w1 = _mm512_mul_ps(W[i], q1);
      s0 = _mm512_add_ps(s0, _mm512_mul_ps(w0, X[i]));
      t0 = _mm512_add_ps(t0, _mm512_mul_ps(w0, q0));
      s1 = _mm512_add_ps(s1, _mm512_mul_ps(w1, X[i]));
      t1 = _mm512_add_ps(t1, _mm512_mul_ps(w1, q1));
    }
    *a0 = s0;
    *b0 = t0;
    *a1 = s1;
    *b1 = t1;
  };
  const __m512 d0 = _mm512_div_ps(_mm512_xor_ps(max, _mm512_set1_ps(-0.0f)), _mm512_set1_ps(-127.f));
  __m512 d = zero, best = zero;
  // candidates: 1/d0, then itry = -7..7, two at a time
  for (int c = 0; c < 16; c += 2) {
    __m512 id[2], sqx[2], sq2[2];
    for (int k = 0; k < 2; ++k) {
      const int itry = c + k - 8;
      id[k] = c + k == 0 ? _mm512_div_ps(_mm512_set1_ps(1.0f), d0)
                         : _mm512_div_ps(_mm512_set1_ps(static_cast<float>(itry - 127)), max);
    }
    sums2(id[0], id[1], &sqx[0], &sq2[0], &sqx[1], &sq2[1]);
    for (int k = 0; k < 2; ++k) {
      if (c + k == 0) {
        d = _mm512_maskz_div_ps(_mm512_cmp_ps_mask(sq2[0], zero, _CMP_GT_OQ), sqx[0], sq2[0]);
        best = _mm512_mul_ps(d, sqx[0]);
        continue;
      }
      const __mmask16 better = _mm512_cmp_ps_mask(sq2[k], zero, _CMP_GT_OQ) &
                               _mm512_cmp_ps_mask(_mm512_mul_ps(sqx[k], sqx[k]), _mm512_mul_ps(best, sq2[k]), _CMP_GT_OQ);
      d = _mm512_mask_mov_ps(d, better, _mm512_div_ps(sqx[k], sq2[k]));
      best = _mm512_mask_mov_ps(best, better, _mm512_mul_ps(d, sqx[k]));
    }
  }
  return _mm512_mask_mov_ps(d, zero_lane, zero);
}

// best_index_int8(id * x) for 32 values, packed as ggml packs them (j | j+16 << 4).
inline void iq4_codes_packed(const float* x, float id, uint8_t* q4) {
  const __m512 v = _mm512_set1_ps(id);
  __m512i i0, i1;
  iq4_value16(_mm512_mul_ps(v, _mm512_loadu_ps(x)), &i0);
  iq4_value16(_mm512_mul_ps(v, _mm512_loadu_ps(x + 16)), &i1);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(q4), _mm512_cvtepi32_epi8(_mm512_or_si512(i0, _mm512_slli_epi32(i1, 4))));
}

inline void iq4_weights16(const __m512* X, const float* qw, __m512 sigma2, __m512* W) {
  if (qw) {
    gather_lanes<32>(qw, 32, W);
    for (int i = 0; i < 32; ++i)
      W[i] = _mm512_mul_ps(W[i], _mm512_sqrt_ps(_mm512_add_ps(sigma2, _mm512_mul_ps(X[i], X[i]))));
  } else {
    for (int i = 0; i < 32; ++i) W[i] = _mm512_mul_ps(X[i], X[i]);
  }
}

// IQ4_NL: 16 blocks of 32 (each its own sigma2 and scale).
inline void iq4_nl_16(const float* x, const float* qw, uint8_t* out) {
  __m512 X[32], W[32];
  gather_lanes<32>(x, 32, X);
  __m512 s2 = _mm512_setzero_ps();
  for (int i = 0; i < 32; ++i) s2 = _mm512_add_ps(s2, _mm512_mul_ps(X[i], X[i]));
  iq4_weights16(X, qw, _mm512_mul_ps(s2, _mm512_set1_ps(2.f / 32)), W);
  alignas(64) float d[16];
  _mm512_store_ps(d, iq4_fit16(X, W));
  for (int j = 0; j < 16; ++j) {
    uint8_t* y = out + sizeof(BlockIQ4_NL) * j;
    store_fp16(y, d[j]);
    iq4_codes_packed(x + 32 * j, d[j] ? 1 / d[j] : 0, y + 2);
  }
}

bool quantize_iq4_nl_avx512(const float* x, size_t nblocks, const float* qw, uint8_t* out) {
  if (!finite_all(x, nblocks * kQK)) return false;
  size_t b = 0;
  for (; b + 16 <= nblocks; b += 16)
    iq4_nl_16(x + kQK * b, qw ? qw + kQK * b : nullptr, out + sizeof(BlockIQ4_NL) * b);
  for (; b < nblocks; ++b)
    kq::quantize_block_iq4_nl(x + kQK * b, qw ? qw + kQK * b : nullptr, out + sizeof(BlockIQ4_NL) * b);
  return true;
}

// IQ4_XS: two super-blocks, 8 sub-blocks of 32 each.
inline void iq4_xs_pair(const float* x, const float* qw, uint8_t* out) {
  __m512 X[32], W[32];
  gather_lanes<32>(x, 32, X);
  float s0, s1;
  sum_sq2(x, x + kQK_K, kQK_K, &s0, &s1);
  s0 *= 2.f / kQK_K;
  s1 *= 2.f / kQK_K;
  iq4_weights16(X, qw, _mm512_mask_mov_ps(_mm512_set1_ps(s0), 0xFF00, _mm512_set1_ps(s1)), W);
  alignas(64) float sc[16];
  _mm512_store_ps(sc, iq4_fit16(X, W));
  for (int h = 0; h < 2; ++h) {
    BlockIQ4_XS* y = reinterpret_cast<BlockIQ4_XS*>(out + h * sizeof(BlockIQ4_XS));
    const float* scales = sc + 8 * h;
    const float* xs = x + h * kQK_K;
    float max_scale = 0, amax_scale = 0;
    for (int ib = 0; ib < 8; ++ib) {
      const float abs_d = std::fabs(scales[ib]);
      if (abs_d > amax_scale) { amax_scale = abs_d; max_scale = scales[ib]; }
    }
    const float dd = -max_scale / 32;
    store_fp16(y->d, dd);
    const float id = dd ? 1 / dd : 0.f;
    uint16_t scales_h = 0;
    for (int ib = 0; ib < 8; ++ib) {
      const float dl = kq::iq4_xs_sub_scale(ib, dd, id, scales[ib], y, &scales_h);
      iq4_codes_packed(xs + 32 * ib, dl ? 1 / dl : 0.f, y->qs + 16 * ib);
    }
    kq::iq4_xs_store_scales_h(y, scales_h);
  }
}

const GgufKernels make_table() {
  GgufKernels t = gguf_avx2;
  t.quantize[kQ2_K] = quantize_q2_K_avx512;
  t.quantize[kQ3_K] = quantize_q3_K_avx512;
  t.quantize[kQ4_K] = quantize_pairs<kQK_K, sizeof(BlockQ4_K), qk45_pair<15>, true, qk45_quad<15>, qk45_oct<15>>;
  t.quantize[kQ5_K] = quantize_pairs<kQK_K, sizeof(BlockQ5_K), qk45_pair<31>, true, qk45_quad<31>, qk45_oct<31>>;
  t.quantize[kQ6_K] = quantize_q6_K_avx512;
  t.quantize[kIQ4_NL] = quantize_iq4_nl_avx512;
  t.quantize[kIQ4_XS] = quantize_pairs<kQK_K, sizeof(BlockIQ4_XS), iq4_xs_pair>;
  return t;
}

}  // namespace

// The avx2 table (constant-initialized) with the entries above; families resolve on
// first use, never during static initialization, so this copy is ready by then.
const GgufKernels gguf_avx512 = make_table();

}  // namespace lowbit
