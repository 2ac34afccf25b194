// search=True encoders: the same bytes formats as llama.cpp's, with the scales
// searched harder than ggml's heuristics (which weight the error by x^2 or
// |x| + rms and stop at a fixed candidate list).
//
// Objective: the weighted squared error sum w (x - dequant(bytes))^2 with w = the
// importance weights if given, else 1 (plain MSE: weight SQNR). Method, per
// super-block: start from ggml's own encoding, then a few rounds of coordinate
// descent on the stored integers: each sub-block's scale code (and min code)
// over a window around the current one, then the float16 super-block scale(s)
// over a grid of nearby values, the sub-block codes rescaled to follow. Every
// value's code is the nearest for the scales at hand (optimal for fixed scales).
// Finally the candidate is decoded with the format's decoder and kept only if
// its error is below ggml's: never worse than llama.cpp's encoder.
//
// Its NumPy twin is python/lowbit/reference/gguf_search.py, byte-identical on every ISA
// variant (tests/test_gguf_search.py): change both together. What makes that possible:
// float32 arithmetic where float is written, float64 error sums in loop order, no FMA
// contraction (-ffp-contract=off), and strict `<` scans over fixed candidate lists.
//
// Included by every ISA variant with internal linkage.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "gguf/gguf.h"
#include "gguf/gguf_kquants.h"
#include "gguf/gguf_ops.h"

namespace lowbit {
namespace {
namespace srch {

constexpr int kRounds = 2;

inline float half_round(float v) { return fp16_to_fp32(fp32_to_fp16(v)); }
inline int clampi(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }
inline int round_i(float v) { return static_cast<int>(std::lrintf(v)); }

inline double weighted_error(const float* x, const float* w, const float* y, int n) {
  double e = 0;
  for (int i = 0; i < n; ++i) {
    const double r = static_cast<double>(x[i]) - static_cast<double>(y[i]);
    e += (w ? static_cast<double>(w[i]) : 1.0) * r * r;
  }
  return e;
}

// Keep `cand` if it decodes to a lower error than `out` (ggml's encoding).
template <size_t kBytes, void (*kDecode)(const uint8_t*, float*)>
inline void keep_better(const float* x, const float* w, const uint8_t* cand, uint8_t* out) {
  float y0[kQK_K], y1[kQK_K];
  kDecode(out, y0);
  kDecode(cand, y1);
  for (int i = 0; i < kQK_K; ++i)
    if (!std::isfinite(y1[i])) return;
  if (weighted_error(x, w, y1, kQK_K) < weighted_error(x, w, y0, kQK_K)) std::memcpy(out, cand, kBytes);
}

// ---- Q4_K / Q5_K: y = (d*ls)*q - dmin*lm, q in [0, nmax], ls/lm in [0, 63] ------------

template <int kNmax>
inline double qk45_sub_error(const float* x, const float* w, float d, float dmin, int ls, int lm, uint8_t* q) {
  const float dl = d * static_cast<float>(ls), ml = dmin * static_cast<float>(lm);
  const float idl = dl != 0.0f ? 1.0f / dl : 0.0f;
  double e = 0;
  for (int i = 0; i < 32; ++i) {
    const int l = clampi(kq::nearest_int((x[i] + ml) * idl), 0, kNmax);
    const float y = dl * static_cast<float>(l) - ml;
    const double r = static_cast<double>(x[i]) - y;
    e += (w ? w[i] : 1.0f) * r * r;
    if (q) q[i] = static_cast<uint8_t>(l);
  }
  return e;
}

template <int kNmax>
inline void qk45_search(const float* x, const float* w, float* d_io, float* dmin_io, int* ls, int* lm) {
  float d = *d_io, dmin = *dmin_io;
  auto w_at = [&](int j) { return w ? w + 32 * j : nullptr; };
  double err[8];
  for (int j = 0; j < 8; ++j) err[j] = qk45_sub_error<kNmax>(x + 32 * j, w_at(j), d, dmin, ls[j], lm[j], nullptr);
  for (int round = 0; round < kRounds; ++round) {
    for (int j = 0; j < 8; ++j) {  // sub-block codes
      int bs = ls[j], bm = lm[j];
      for (int a = -2; a <= 2; ++a)
        for (int b = -2; b <= 2; ++b) {
          const int s = clampi(ls[j] + a, 0, 63), m = clampi(lm[j] + b, 0, 63);
          if (s == bs && m == bm) continue;
          const double e = qk45_sub_error<kNmax>(x + 32 * j, w_at(j), d, dmin, s, m, nullptr);
          if (e < err[j]) { err[j] = e; bs = s; bm = m; }
        }
      ls[j] = bs;
      lm[j] = bm;
    }
    for (int which = 0; which < 2; ++which) {  // the super-block scale, then the min scale
      const float base = which == 0 ? d : dmin;
      if (base == 0.0f) continue;
      double best_total = 0;
      for (int j = 0; j < 8; ++j) best_total += err[j];
      for (int k = -6; k <= 6; ++k) {
        if (k == 0) continue;
        const float cand = half_round(base * (1.0f + static_cast<float>(k) / 128.0f));
        if (cand == base || !std::isfinite(cand)) continue;
        double total = 0, e_j[8];
        int c_j[8];
        for (int j = 0; j < 8; ++j) {
          const int cur = which == 0 ? ls[j] : lm[j];
          const int c0 = round_i(static_cast<float>(cur) * base / cand);
          e_j[j] = 1e300;
          c_j[j] = cur;
          for (int c = clampi(c0 - 1, 0, 63); c <= clampi(c0 + 1, 0, 63); ++c) {
            const double e = which == 0
                                 ? qk45_sub_error<kNmax>(x + 32 * j, w_at(j), cand, dmin, c, lm[j], nullptr)
                                 : qk45_sub_error<kNmax>(x + 32 * j, w_at(j), d, cand, ls[j], c, nullptr);
            if (e < e_j[j]) { e_j[j] = e; c_j[j] = c; }
          }
          total += e_j[j];
        }
        if (total < best_total) {
          best_total = total;
          (which == 0 ? d : dmin) = cand;
          for (int j = 0; j < 8; ++j) {
            (which == 0 ? ls[j] : lm[j]) = c_j[j];
            err[j] = e_j[j];
          }
        }
      }
    }
  }
  *d_io = d;
  *dmin_io = dmin;
}

template <int kNmax>
inline void qk45_params(const uint8_t* d_p, const uint8_t* dmin_p, const uint8_t* sc, float* d, float* dmin, int* ls,
                        int* lm) {
  *d = load_fp16(d_p);
  *dmin = load_fp16(dmin_p);
  for (int j = 0; j < 8; ++j) {
    uint8_t s, m;
    kq::get_scale_min_k4(j, sc, &s, &m);
    ls[j] = s;
    lm[j] = m;
  }
}

// With an importance matrix the fits below also start from the values of one sub-block
// that weigh at least kHeavyFrac[r] times its mean weight (r = 1..3; r = 0: all of them),
// tested exactly in double: w[i] * 32 >= f * sum w.
constexpr int kHeavyStarts = 4;
constexpr double kHeavyFrac[kHeavyStarts] = {0.0, 0.25, 0.5, 1.0};
inline double weight_sum32(const float* w) {
  double s = 0;
  for (int i = 0; i < 32; ++i) s += w[i];
  return s;
}
inline bool heavy(const float* w, int i, double wsum, int r) {
  return static_cast<double>(w[i]) * 32.0 >= kHeavyFrac[r] * wsum;
}

// A continuous least-squares fit of one sub-block (scale > 0, offset m <= 0) from
// many starting steps, each refined twice (codes, then the fit of scale and
// offset to them): a start for the 6-bit codes that ggml's weighted heuristic
// does not reach. With an importance matrix the steps are also taken from the
// range of the values whose weight is at least 1/4, 1/2 and 1 times the
// sub-block's mean weight (w[i] * 32 >= f * sum w, exact in double), so that
// light values may clip: measured on MiniLM with an imatrix, Q4_K's weighted
// SQNR gain over ggml's encoder went from +0.42 to about +0.57 dB.
template <int kNmax>
inline void qk45_fit(const float* x, const float* w, float* s_out, float* m_out) {
  float mn = x[0], mx = x[0];
  for (int i = 1; i < 32; ++i) { mn = x[i] < mn ? x[i] : mn; mx = x[i] > mx ? x[i] : mx; }
  if (mn > 0) mn = 0;
  *s_out = 0;
  *m_out = mn;
  if (!(mx > mn)) return;
  const double swt = w ? weight_sum32(w) : 0.0;
  double best = 1e300;
  for (int r = 0; r < (w ? kHeavyStarts : 1); ++r) {
    float lo = mn, hi = mx;
    if (r > 0) {
      bool any = false;
      for (int i = 0; i < 32; ++i) {
        if (!heavy(w, i, swt, r)) continue;
        if (!any) { lo = x[i]; hi = x[i]; any = true; }
        lo = x[i] < lo ? x[i] : lo;
        hi = x[i] > hi ? x[i] : hi;
      }
      if (lo > 0) lo = 0;
      if (!any || !(hi > lo)) continue;
    }
    for (int t = -16; t <= 8; ++t) {
      float s = (hi - lo) / (static_cast<float>(kNmax) + 0.25f * static_cast<float>(t)), m = lo;
      for (int it = 0; it < 3; ++it) {
        const float is = 1.0f / s;
        double sw = 0, sl = 0, sl2 = 0, sx = 0, sxl = 0, e = 0;
        int L[32];
        for (int i = 0; i < 32; ++i) {
          L[i] = clampi(kq::nearest_int((x[i] - m) * is), 0, kNmax);
          const double wi = w ? w[i] : 1.0, r2 = x[i] - (s * L[i] + m);
          e += wi * r2 * r2;
          sw += wi; sl += wi * L[i]; sl2 += wi * L[i] * L[i]; sx += wi * x[i]; sxl += wi * x[i] * L[i];
        }
        if (e < best) { best = e; *s_out = s; *m_out = m; }
        const double D = sw * sl2 - sl * sl;
        if (!(D > 0)) break;
        double ns = (sw * sxl - sx * sl) / D, nm = (sl2 * sx - sl * sxl) / D;
        if (nm > 0) { nm = 0; ns = sl2 > 0 ? sxl / sl2 : 0; }
        if (!(ns > 0)) break;
        s = static_cast<float>(ns);
        m = static_cast<float>(nm);
      }
    }
  }
}

template <int kNmax>
inline void qk45_from_fit(const float* x, const float* w, float* d, float* dmin, int* ls, int* lm) {
  float sc[8], mi[8], max_s = 0, max_m = 0;
  for (int j = 0; j < 8; ++j) {
    float m;
    qk45_fit<kNmax>(x + 32 * j, w ? w + 32 * j : nullptr, &sc[j], &m);
    mi[j] = -m;
    max_s = sc[j] > max_s ? sc[j] : max_s;
    max_m = mi[j] > max_m ? mi[j] : max_m;
  }
  *d = half_round(max_s / 63.f);
  *dmin = half_round(max_m / 63.f);
  for (int j = 0; j < 8; ++j) {
    ls[j] = *d > 0 ? clampi(round_i(sc[j] / *d), 0, 63) : 0;
    lm[j] = *dmin > 0 ? clampi(round_i(mi[j] / *dmin), 0, 63) : 0;
  }
}

template <int kNmax>
inline double qk45_total(const float* x, const float* w, float d, float dmin, const int* ls, const int* lm) {
  double e = 0;
  for (int j = 0; j < 8; ++j) e += qk45_sub_error<kNmax>(x + 32 * j, w ? w + 32 * j : nullptr, d, dmin, ls[j], lm[j], nullptr);
  return e;
}

// Both starts (ggml's codes, the fit's), descended; the better one's parameters.
template <int kNmax>
inline bool qk45_best(const float* x, const float* w, const uint8_t* d_p, const uint8_t* dmin_p, const uint8_t* sc,
                      float* d, float* dmin, int* ls, int* lm) {
  qk45_params<kNmax>(d_p, dmin_p, sc, d, dmin, ls, lm);
  if (!std::isfinite(*d) || !std::isfinite(*dmin)) return false;
  qk45_search<kNmax>(x, w, d, dmin, ls, lm);
  float d2, dmin2;
  int ls2[8], lm2[8];
  qk45_from_fit<kNmax>(x, w, &d2, &dmin2, ls2, lm2);
  if (!std::isfinite(d2) || !std::isfinite(dmin2)) return true;
  qk45_search<kNmax>(x, w, &d2, &dmin2, ls2, lm2);
  if (qk45_total<kNmax>(x, w, d2, dmin2, ls2, lm2) < qk45_total<kNmax>(x, w, *d, *dmin, ls, lm)) {
    *d = d2;
    *dmin = dmin2;
    std::memcpy(ls, ls2, sizeof ls2);
    std::memcpy(lm, lm2, sizeof lm2);
  }
  return true;
}

inline void search_block_q4_K(const float* x, const float* w, uint8_t* out) {
  kq::quantize_block_q4_K(x, w, out);
  const BlockQ4_K* g = reinterpret_cast<const BlockQ4_K*>(out);
  float d, dmin;
  int ls[8], lm[8];
  if (!qk45_best<15>(x, w, g->d, g->dmin, g->scales, &d, &dmin, ls, lm)) return;
  uint8_t cand[sizeof(BlockQ4_K)];
  BlockQ4_K* y = reinterpret_cast<BlockQ4_K*>(cand);
  store_fp16(y->d, d);
  store_fp16(y->dmin, dmin);
  std::memset(y->scales, 0, 12);
  for (int j = 0; j < 8; ++j)
    kq::pack_scale_min_k4(j, static_cast<uint8_t>(ls[j]), static_cast<uint8_t>(lm[j]), y->scales);
  uint8_t L[kQK_K];
  for (int j = 0; j < 8; ++j) qk45_sub_error<15>(x + 32 * j, w ? w + 32 * j : nullptr, d, dmin, ls[j], lm[j], L + 32 * j);
  for (int j = 0; j < kQK_K; j += 64)
    for (int l = 0; l < 32; ++l) y->qs[j / 2 + l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 4));
  keep_better<sizeof(BlockQ4_K), kq::dequantize_block_q4_K>(x, w, cand, out);
}

inline void search_block_q5_K(const float* x, const float* w, uint8_t* out) {
  kq::quantize_block_q5_K(x, w, out);
  const BlockQ5_K* g = reinterpret_cast<const BlockQ5_K*>(out);
  float d, dmin;
  int ls[8], lm[8];
  if (!qk45_best<31>(x, w, g->d, g->dmin, g->scales, &d, &dmin, ls, lm)) return;
  uint8_t cand[sizeof(BlockQ5_K)];
  BlockQ5_K* y = reinterpret_cast<BlockQ5_K*>(cand);
  store_fp16(y->d, d);
  store_fp16(y->dmin, dmin);
  std::memset(y->scales, 0, 12);
  for (int j = 0; j < 8; ++j)
    kq::pack_scale_min_k4(j, static_cast<uint8_t>(ls[j]), static_cast<uint8_t>(lm[j]), y->scales);
  uint8_t L[kQK_K];
  for (int j = 0; j < 8; ++j) qk45_sub_error<31>(x + 32 * j, w ? w + 32 * j : nullptr, d, dmin, ls[j], lm[j], L + 32 * j);
  std::memset(y->qh, 0, 32);
  for (int n = 0, s = 0; n < kQK_K; n += 64, s += 2)
    for (int j = 0; j < 32; ++j) {
      const int l1 = L[n + j], l2 = L[n + j + 32];
      y->qh[j] |= static_cast<uint8_t>(((l1 >> 4) << s) | ((l2 >> 4) << (s + 1)));
      y->qs[n / 2 + j] = static_cast<uint8_t>((l1 & 15) | ((l2 & 15) << 4));
    }
  keep_better<sizeof(BlockQ5_K), kq::dequantize_block_q5_K>(x, w, cand, out);
}

// ---- Q6_K: y = (d*sc)*q, q in [-32, 31], sc in [-128, 127] ------------------------------

inline double q6_sub_error(const float* x, const float* w, float d, int sc, int8_t* q) {
  const float dl = d * static_cast<float>(sc);
  const float idl = dl != 0.0f ? 1.0f / dl : 0.0f;
  double e = 0;
  for (int i = 0; i < 16; ++i) {
    const int l = clampi(kq::nearest_int(x[i] * idl), -32, 31);
    const float y = dl * static_cast<float>(l);
    const double r = static_cast<double>(x[i]) - y;
    e += (w ? w[i] : 1.0f) * r * r;
    if (q) q[i] = static_cast<int8_t>(l);
  }
  return e;
}

inline double q6_total(const float* x, const float* w, float d, const int* sc) {
  double e = 0;
  for (int j = 0; j < 16; ++j) e += q6_sub_error(x + 16 * j, w ? w + 16 * j : nullptr, d, sc[j], nullptr);
  return e;
}

inline void q6_descend(const float* x, const float* w, float* d_io, int* sc) {
  float d = *d_io;
  auto w_at = [&](int j) { return w ? w + 16 * j : nullptr; };
  double err[16];
  for (int j = 0; j < 16; ++j) err[j] = q6_sub_error(x + 16 * j, w_at(j), d, sc[j], nullptr);
  for (int round = 0; round < kRounds; ++round) {
    for (int j = 0; j < 16; ++j) {
      int best = sc[j];
      for (int a = -3; a <= 3; ++a) {
        const int s = clampi(sc[j] + a, -128, 127);
        if (s == best) continue;
        const double e = q6_sub_error(x + 16 * j, w_at(j), d, s, nullptr);
        if (e < err[j]) { err[j] = e; best = s; }
      }
      sc[j] = best;
    }
    double best_total = 0;
    for (int j = 0; j < 16; ++j) best_total += err[j];
    const float base = d;
    for (int k = -8; k <= 8; ++k) {
      if (k == 0) continue;
      const float cand = half_round(base * (1.0f + static_cast<float>(k) / 256.0f));
      if (cand == base || !std::isfinite(cand) || cand == 0.0f) continue;
      double total = 0, e_j[16];
      int c_j[16];
      for (int j = 0; j < 16; ++j) {
        const int c0 = round_i(static_cast<float>(sc[j]) * base / cand);
        e_j[j] = 1e300;
        c_j[j] = sc[j];
        for (int c = clampi(c0 - 1, -128, 127); c <= clampi(c0 + 1, -128, 127); ++c) {
          const double e = q6_sub_error(x + 16 * j, w_at(j), cand, c, nullptr);
          if (e < e_j[j]) { e_j[j] = e; c_j[j] = c; }
        }
        total += e_j[j];
      }
      if (total < best_total) {
        best_total = total;
        d = cand;
        for (int j = 0; j < 16; ++j) { sc[j] = c_j[j]; err[j] = e_j[j]; }
      }
    }
  }
  *d_io = d;
}

// Continuous per-16 scales: many steps amax / t of both signs, each refined by
// the least-squares scale of its codes; then d = max |scale| / 127.
inline bool q6_from_fit(const float* x, const float* w, float* d, int* sc) {
  float s_j[16], amax_s = 0;
  for (int j = 0; j < 16; ++j) {
    const float* xb = x + 16 * j;
    const float* wb = w ? w + 16 * j : nullptr;
    float amax = 0;
    for (int i = 0; i < 16; ++i) amax = std::fabs(xb[i]) > amax ? std::fabs(xb[i]) : amax;
    s_j[j] = 0;
    if (amax == 0) continue;
    double best = 1e300;
    for (int sgn = -1; sgn <= 1; sgn += 2)
      for (int t = 0; t <= 28; ++t) {
        float s = static_cast<float>(sgn) * amax / (20.0f + 0.5f * static_cast<float>(t));
        for (int it = 0; it < 2; ++it) {
          const float is = 1.0f / s;
          double e = 0, slx = 0, sl2 = 0;
          for (int i = 0; i < 16; ++i) {
            const int l = clampi(kq::nearest_int(xb[i] * is), -32, 31);
            const double wi = wb ? wb[i] : 1.0, r = xb[i] - s * l;
            e += wi * r * r;
            slx += wi * xb[i] * l;
            sl2 += wi * l * l;
          }
          if (e < best) { best = e; s_j[j] = s; }
          if (!(sl2 > 0) || slx == 0) break;
          s = static_cast<float>(slx / sl2);
        }
      }
    amax_s = std::fabs(s_j[j]) > amax_s ? std::fabs(s_j[j]) : amax_s;
  }
  *d = half_round(amax_s / 127.0f);
  if (!(*d > 0) || !std::isfinite(*d)) return false;
  for (int j = 0; j < 16; ++j) sc[j] = clampi(round_i(s_j[j] / *d), -128, 127);
  return true;
}

inline void search_block_q6_K(const float* x, const float* w, uint8_t* out) {
  kq::quantize_block_q6_K(x, w, out);
  const BlockQ6_K* g = reinterpret_cast<const BlockQ6_K*>(out);
  float d = load_fp16(g->d);
  if (!std::isfinite(d) || d == 0.0f) return;
  int sc[16];
  for (int j = 0; j < 16; ++j) sc[j] = g->scales[j];
  q6_descend(x, w, &d, sc);
  float d2;
  int sc2[16];
  if (q6_from_fit(x, w, &d2, sc2)) {
    q6_descend(x, w, &d2, sc2);
    if (q6_total(x, w, d2, sc2) < q6_total(x, w, d, sc)) {
      d = d2;
      std::memcpy(sc, sc2, sizeof sc2);
    }
  }
  auto w_at = [&](int j) { return w ? w + 16 * j : nullptr; };
  uint8_t cand[sizeof(BlockQ6_K)];
  BlockQ6_K* y = reinterpret_cast<BlockQ6_K*>(cand);
  store_fp16(y->d, d);
  int8_t L[kQK_K];
  for (int j = 0; j < 16; ++j) {
    y->scales[j] = static_cast<int8_t>(sc[j]);
    q6_sub_error(x + 16 * j, w_at(j), d, sc[j], L + 16 * j);
  }
  for (int j = 0; j < kQK_K; j += 128)
    for (int l = 0; l < 32; ++l) {
      const int q1 = L[j + l] + 32, q2 = L[j + l + 32] + 32, q3 = L[j + l + 64] + 32, q4 = L[j + l + 96] + 32;
      y->ql[j / 2 + l] = static_cast<uint8_t>((q1 & 0xF) | ((q3 & 0xF) << 4));
      y->ql[j / 2 + l + 32] = static_cast<uint8_t>((q2 & 0xF) | ((q4 & 0xF) << 4));
      y->qh[j / 4 + l] = static_cast<uint8_t>((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
    }
  keep_better<sizeof(BlockQ6_K), kq::dequantize_block_q6_K>(x, w, cand, out);
}

// ---- IQ4_XS / IQ4_NL: y = (d*l)*kvalues[q] ----------------------------------------------

// Midpoints of the IQ4 grid: the nearest grid index of v is the count of midpoints below v.
constexpr float kIq4Mid[15] = {-115.5f, -93.5f, -74.f, -57.f, -42.f, -28.5f, -16.f, -4.5f,
                               7.f,     19.f,   31.5f, 45.5f, 61.f, 79.f,   101.f};

inline int iq4_nearest(float v) {
  int k = 0;
  for (int m = 0; m < 15; ++m) k += v > kIq4Mid[m];
  return k;
}

inline double iq4_sub_error(const float* x, const float* w, float dl, uint8_t* q) {
  const float idl = dl != 0.0f ? 1.0f / dl : 0.0f;
  double e = 0;
  for (int i = 0; i < 32; ++i) {
    const int k = iq4_nearest(idl * x[i]);
    const float y = dl * static_cast<float>(kq::kIq4nlValues[k]);
    const double r = static_cast<double>(x[i]) - y;
    e += (w ? w[i] : 1.0f) * r * r;
    if (q) q[i] = static_cast<uint8_t>(k);
  }
  return e;
}

inline double iq4xs_total(const float* x, const float* w, float d, const int* ls) {
  double e = 0;
  for (int j = 0; j < 8; ++j) e += iq4_sub_error(x + 32 * j, w ? w + 32 * j : nullptr, d * static_cast<float>(ls[j]), nullptr);
  return e;
}

inline void iq4xs_descend(const float* x, const float* w, float* d_io, int* ls) {
  float d = *d_io;
  auto w_at = [&](int j) { return w ? w + 32 * j : nullptr; };
  auto sub = [&](int j, float dd, int l) { return iq4_sub_error(x + 32 * j, w_at(j), dd * static_cast<float>(l), nullptr); };
  double err[8];
  for (int j = 0; j < 8; ++j) err[j] = sub(j, d, ls[j]);
  for (int round = 0; round < kRounds; ++round) {
    for (int j = 0; j < 8; ++j) {
      int best = ls[j];
      for (int a = -2; a <= 2; ++a) {
        const int l = clampi(ls[j] + a, -32, 31);
        if (l == best) continue;
        const double e = sub(j, d, l);
        if (e < err[j]) { err[j] = e; best = l; }
      }
      ls[j] = best;
    }
    double best_total = 0;
    for (int j = 0; j < 8; ++j) best_total += err[j];
    const float base = d;
    for (int k = -6; k <= 6; ++k) {
      if (k == 0) continue;
      const float cand = half_round(base * (1.0f + static_cast<float>(k) / 128.0f));
      if (cand == base || !std::isfinite(cand) || cand == 0.0f) continue;
      double total = 0, e_j[8];
      int c_j[8];
      for (int j = 0; j < 8; ++j) {
        const int c0 = round_i(static_cast<float>(ls[j]) * base / cand);
        e_j[j] = 1e300;
        c_j[j] = ls[j];
        for (int c = clampi(c0 - 1, -32, 31); c <= clampi(c0 + 1, -32, 31); ++c) {
          const double e = sub(j, cand, c);
          if (e < e_j[j]) { e_j[j] = e; c_j[j] = c; }
        }
        total += e_j[j];
        if (total >= best_total) break;
      }
      if (total < best_total) {
        best_total = total;
        d = cand;
        for (int j = 0; j < 8; ++j) { ls[j] = c_j[j]; err[j] = e_j[j]; }
      }
    }
  }
  *d_io = d;
}

// The continuous scale of one 32-value sub-block on the IQ4 grid: the signed
// absmax mapped near either end of the grid (many ratios), each refined by the
// least-squares scale of its grid values. With an importance matrix, also the
// signed absmax of the values weighing at least 1/4, 1/2 and 1 times the mean
// weight (w[i] * 32 >= f * sum w, as in qk45_fit), so that light values may clip.
inline float iq4_fit(const float* x, const float* w) {
  float amax = 0, max = 0;
  for (int i = 0; i < 32; ++i)
    if (std::fabs(x[i]) > amax) { amax = std::fabs(x[i]); max = x[i]; }
  if (amax == 0) return 0;
  const double swt = w ? weight_sum32(w) : 0.0;
  double best = 1e300;
  float best_d = 0;
  for (int r = 0; r < (w ? kHeavyStarts : 1); ++r) {
    float top = max;
    if (r > 0) {
      float ramax = 0;
      top = 0;
      for (int i = 0; i < 32; ++i)
        if (heavy(w, i, swt, r) && std::fabs(x[i]) > ramax) {
          ramax = std::fabs(x[i]);
          top = x[i];
        }
      if (ramax == 0) continue;
    }
    for (int end = 0; end < 2; ++end)
      for (int k = -8; k <= 16; ++k) {
        const float v0 = end ? -127.0f : 113.0f;
        float d = top / (v0 * (1.0f + static_cast<float>(k) / 64.0f));
        for (int it = 0; it < 2; ++it) {
          const float id = 1.0f / d;
          double e = 0, sqx = 0, sq2 = 0;
          for (int i = 0; i < 32; ++i) {
            const float q = kq::kIq4nlValues[iq4_nearest(x[i] * id)];
            const double wi = w ? w[i] : 1.0, r2 = x[i] - d * q;
            e += wi * r2 * r2;
            sqx += wi * q * x[i];
            sq2 += wi * q * q;
          }
          if (e < best) { best = e; best_d = d; }
          if (!(sq2 > 0) || sqx == 0) break;
          d = static_cast<float>(sqx / sq2);
        }
      }
  }
  return best_d;
}

inline void search_block_iq4_xs(const float* x, const float* w, uint8_t* out) {
  kq::quantize_block_iq4_xs(x, w, out);
  const BlockIQ4_XS* g = reinterpret_cast<const BlockIQ4_XS*>(out);
  float d = load_fp16(g->d);
  if (!std::isfinite(d) || d == 0.0f) return;
  const unsigned sh = g->scales_h[0] | (g->scales_h[1] << 8);
  int ls[8];
  for (int ib = 0; ib < 8; ++ib)
    ls[ib] = (((g->scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) | (((sh >> 2 * ib) & 3) << 4)) - 32;
  auto w_at = [&](int j) { return w ? w + 32 * j : nullptr; };
  iq4xs_descend(x, w, &d, ls);
  {  // the second start: fitted sub-block scales, d = -(the largest) / 32 as ggml lays it out
    float s_j[8], max_s = 0, amax_s = 0;
    for (int j = 0; j < 8; ++j) {
      s_j[j] = iq4_fit(x + 32 * j, w_at(j));
      if (std::fabs(s_j[j]) > amax_s) { amax_s = std::fabs(s_j[j]); max_s = s_j[j]; }
    }
    const float d2 = half_round(-max_s / 32.0f);
    if (d2 != 0.0f && std::isfinite(d2)) {
      float dd = d2;
      int ls2[8];
      for (int j = 0; j < 8; ++j) ls2[j] = clampi(round_i(s_j[j] / d2), -32, 31);
      iq4xs_descend(x, w, &dd, ls2);
      if (iq4xs_total(x, w, dd, ls2) < iq4xs_total(x, w, d, ls)) {
        d = dd;
        std::memcpy(ls, ls2, sizeof ls2);
      }
    }
  }
  uint8_t cand[sizeof(BlockIQ4_XS)];
  BlockIQ4_XS* y = reinterpret_cast<BlockIQ4_XS*>(cand);
  store_fp16(y->d, d);
  unsigned scales_h = 0;
  uint8_t L[kQK_K];
  std::memset(y->scales_l, 0, 4);
  for (int ib = 0; ib < 8; ++ib) {
    iq4_sub_error(x + 32 * ib, w_at(ib), d * static_cast<float>(ls[ib]), L + 32 * ib);
    const int l = ls[ib] + 32;
    y->scales_l[ib / 2] |= static_cast<uint8_t>((l & 0xf) << 4 * (ib % 2));
    scales_h |= static_cast<unsigned>(l >> 4) << 2 * ib;
  }
  y->scales_h[0] = static_cast<uint8_t>(scales_h);
  y->scales_h[1] = static_cast<uint8_t>(scales_h >> 8);
  kq::pack_iq4(L, kQK_K, y->qs);
  keep_better<sizeof(BlockIQ4_XS), kq::dequantize_block_iq4_xs>(x, w, cand, out);
}

inline void search_block_iq4_nl(const float* x, const float* w, uint8_t* out) {
  kq::quantize_block_iq4_nl(x, w, out);
  const float d0 = load_fp16(out);
  if (!std::isfinite(d0) || d0 == 0.0f) return;
  float best_d = d0;
  double best = iq4_sub_error(x, w, d0, nullptr);
  const float fit = half_round(iq4_fit(x, w));
  if (fit != 0.0f && std::isfinite(fit)) {
    const double e = iq4_sub_error(x, w, fit, nullptr);
    if (e < best) { best = e; best_d = fit; }
  }
  const float base = best_d;
  for (int sign = 0; sign < 2; ++sign)
    for (int k = -12; k <= 12; ++k) {
      const float cand = half_round((sign ? -base : base) * (1.0f + static_cast<float>(k) / 256.0f));
      if (!std::isfinite(cand) || cand == 0.0f) continue;
      const double e = iq4_sub_error(x, w, cand, nullptr);
      if (e < best) { best = e; best_d = cand; }
    }
  uint8_t L[32];
  iq4_sub_error(x, w, best_d, L);
  uint8_t cand[sizeof(BlockIQ4_NL)];
  store_fp16(cand, best_d);
  kq::pack_iq4(L, 32, cand + 2);
  // keep_better works on 256 values; IQ4_NL blocks are 32: compare directly.
  float y0[32], y1[32];
  kq::dequantize_block_iq4_nl(out, y0);
  kq::dequantize_block_iq4_nl(cand, y1);
  if (weighted_error(x, w, y1, 32) < weighted_error(x, w, y0, 32)) std::memcpy(out, cand, sizeof(BlockIQ4_NL));
}

}  // namespace srch
}  // namespace
}  // namespace lowbit
