// Calibration driver: groups, candidate grids, the KL search and threading.
// Baseline code; the per-ISA work is in the CalibKernels.
#include "calib/calib.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <vector>

#include "core/common.h"
#include "core/parallel.h"

namespace lowbit {

LOWBIT_KERNEL_FAMILY_INSTANCE(calib);

namespace {

constexpr size_t kChunk = 1 << 14;   // a group's sums are taken over chunks of this many values, in order
constexpr double kKlEps = 1e-10;     // Q = 0 where P > 0 counts as this (reference: KL_EPS)
constexpr size_t kLnTable = 1 << 16;

// SPEC 1-2 parameters of one group, exactly as affine.cpp computes them.
void group_params(float lo, float hi, const AffineParams& p, float* scale, float* inv, int32_t* zp) {
  float s;
  if (p.scheme == AffineScheme::absmax) {
    double a = std::max(std::fabs(static_cast<double>(lo)), std::fabs(static_cast<double>(hi)));
    s = static_cast<float>(a / p.absmax_qmax);
  } else {
    lo = std::min(lo, 0.0f);
    hi = std::max(hi, 0.0f);
    s = static_cast<float>((static_cast<double>(hi) - static_cast<double>(lo)) / (p.qmax - p.qmin));
  }
  s = std::max(s, FLT_MIN);
  float iv = 1.0f / s;
  int32_t z = 0;
  if (p.scheme == AffineScheme::minmax) {
    float prod = lo * iv;
    z = p.qmin - static_cast<int32_t>(std::nearbyint(prod));
    z = std::min(std::max(z, p.qmin), p.qmax);
  }
  *scale = s;
  *inv = iv;
  *zp = z;
}

// ln(k) for small integers from a table, else std::log.
const double* ln_table() {
  static std::vector<double> t;
  static std::once_flag once;
  std::call_once(once, [] {
    t.resize(kLnTable);
    t[0] = 0.0;
    for (size_t k = 1; k < kLnTable; ++k) t[k] = std::log(static_cast<double>(k));
  });
  return t.data();
}
inline double ln_u64(const double* tab, uint64_t k) {
  return k < kLnTable ? tab[k] : std::log(static_cast<double>(k));
}

// The values of every group, contiguous: pointers into x for the "groups"
// layout, else a group-major copy (the C order of the values within a group).
struct Groups {
  std::vector<float> buf;
  std::vector<const float*> ptr;
  std::vector<size_t> len;
};

Groups gather(const float* x, const AffineLayout& L) {
  Groups g;
  size_t G = L.n_groups();
  g.ptr.resize(G);
  g.len.resize(G);
  if (L.kind == AffineLayout::groups) {
    size_t per_row = ceil_div(L.b, L.c);
    for (size_t k = 0; k < G; ++k) {
      size_t r = k / per_row, s = (k % per_row) * L.c;
      g.ptr[k] = x + r * L.b + s;
      g.len[k] = std::min(L.c, L.b - s);
    }
    return g;
  }
  size_t outer = L.a, C = L.b, inner = L.kind == AffineLayout::cols ? 1 : L.c, per = outer * inner;
  g.buf.resize(outer * C * inner);
  float* out = g.buf.data();
  parallel_for(C, std::max<size_t>(1, kChunk / std::max<size_t>(per, 1)), [&](size_t b, size_t e) {
    for (size_t c = b; c < e; ++c)
      for (size_t o = 0; o < outer; ++o)
        std::copy(x + (o * C + c) * inner, x + (o * C + c + 1) * inner, out + c * per + o * inner);
  });
  for (size_t c = 0; c < C; ++c) {
    g.ptr[c] = out + c * per;
    g.len[c] = per;
  }
  return g;
}

// ---- percentile ------------------------------------------------------------------------

// NumPy's "linear" interpolation between the order statistics a = v[k] and
// b = v[k + 1] of the sorted data: gamma in float64, the arithmetic in float32
// (numpy's _lerp with a Python-float percentile).
float np_lerp(float a, float b, double gamma) {
  float diff = b - a;
  if (gamma >= 0.5) return b - diff * static_cast<float>(1.0 - gamma);
  return a + diff * static_cast<float>(gamma);
}

// Virtual index of np.percentile(..., q * 100) over n values, float64 as NumPy computes it.
double virtual_index(size_t n, double q) { return (static_cast<double>(n) * q + (1.0 - q)) - 1.0; }

// Order statistics k and k + 1 (k + 1 < n) of v by selection (nth_element), not a sort.
float percentile_small(std::vector<float>& v, double q) {
  size_t n = v.size();
  double vi = virtual_index(n, q);
  if (vi >= static_cast<double>(n - 1)) return *std::max_element(v.begin(), v.end());
  if (vi < 0) return *std::min_element(v.begin(), v.end());
  double fl = std::floor(vi);
  size_t k = static_cast<size_t>(fl);
  std::nth_element(v.begin(), v.begin() + k, v.end());
  float a = v[k];
  float b = *std::min_element(v.begin() + k + 1, v.end());
  return np_lerp(a, b, vi - fl);
}

// Large groups: a parallel two-pass radix selection on order-preserving keys of
// the float bits (pass 1 counts the top 16 bits, pass 2 gathers the one or two
// buckets holding ranks k and k + 1, which are then selected exactly).
inline uint32_t order_key(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

void select_pair_large(const float* x, size_t n, bool absval, size_t k, float* a, float* b) {
  constexpr size_t B = 1 << 16;
  size_t nchunks = std::max<size_t>(1, std::min<size_t>(8, ceil_div(n, 1 << 20)));
  size_t chunk = ceil_div(n, nchunks);
  auto val = [&](size_t i) { return absval ? std::fabs(x[i]) : x[i]; };
  std::vector<uint32_t> part(nchunks * B, 0);
  parallel_for(nchunks, 1, [&](size_t c0, size_t c1) {
    for (size_t c = c0; c < c1; ++c) {
      uint32_t* h = &part[c * B];
      for (size_t i = c * chunk, e = std::min(n, (c + 1) * chunk); i < e; ++i) ++h[order_key(val(i)) >> 16];
    }
  });
  size_t want[2] = {k, std::min(k + 1, n - 1)}, bucket[2] = {0, 0}, before[2] = {0, 0};
  size_t cum = 0;
  for (size_t t = 0, w = 0; t < B && w < 2; ++t) {
    size_t cnt = 0;
    for (size_t c = 0; c < nchunks; ++c) cnt += part[c * B + t];
    while (w < 2 && want[w] < cum + cnt) bucket[w] = t, before[w] = cum, ++w;
    cum += cnt;
  }
  std::vector<std::vector<float>> got(nchunks);
  parallel_for(nchunks, 1, [&](size_t c0, size_t c1) {
    for (size_t c = c0; c < c1; ++c)
      for (size_t i = c * chunk, e = std::min(n, (c + 1) * chunk); i < e; ++i) {
        float v = val(i);
        uint32_t t = order_key(v) >> 16;
        if (t == bucket[0] || t == bucket[1]) got[c].push_back(v);
      }
  });
  std::vector<float> lo, hi;  // the values of bucket[0] and (if different) bucket[1]
  for (auto& g : got)
    for (float v : g) ((order_key(v) >> 16) == bucket[0] ? lo : hi).push_back(v);
  size_t r = want[0] - before[0];
  std::nth_element(lo.begin(), lo.begin() + r, lo.end());
  *a = lo[r];
  if (bucket[1] == bucket[0]) {
    *b = r + 1 < lo.size() ? *std::min_element(lo.begin() + r + 1, lo.end()) : *a;
  } else {
    *b = *std::min_element(hi.begin(), hi.end());
  }
}

float percentile_large(const float* x, size_t n, bool absval, double q) {
  double vi = virtual_index(n, q);
  float a, b;
  if (vi >= static_cast<double>(n - 1)) {
    select_pair_large(x, n, absval, n - 1, &a, &b);
    return a;
  }
  if (vi < 0) {
    select_pair_large(x, n, absval, 0, &a, &b);
    return a;
  }
  double fl = std::floor(vi);
  select_pair_large(x, n, absval, static_cast<size_t>(fl), &a, &b);
  return np_lerp(a, b, vi - fl);
}

constexpr size_t kLargeSelect = 1 << 18;

void percentile_range(const float* x, size_t n, const CalibParams& p, bool parallel, float* lo, float* hi) {
  double q = p.percentile / 100.0, q_lo = (100.0 - p.percentile) / 100.0;
  bool sym = p.affine.scheme == AffineScheme::absmax;
  if (parallel && n >= kLargeSelect) {
    if (sym) {
      float c = percentile_large(x, n, true, q);
      *lo = -c, *hi = c;
    } else {
      *lo = percentile_large(x, n, false, q_lo);
      *hi = percentile_large(x, n, false, q);
    }
    return;
  }
  std::vector<float> v(x, x + n);
  if (sym) {
    for (float& t : v) t = std::fabs(t);
    float c = percentile_small(v, q);
    *lo = -c;
    *hi = c;
  } else {
    *lo = percentile_small(v, q_lo);
    *hi = percentile_small(v, q);
  }
}

// ---- mse -------------------------------------------------------------------------------

struct Candidates {
  std::vector<float> lo, hi, inv, scale, qlo, qhi;
};

// Fills c (reused across groups: no allocation once sized).
void mse_candidates(float dlo, float dhi, const CalibParams& p, Candidates& c) {
  size_t n = static_cast<size_t>(p.n_candidates);
  for (auto* v : {&c.lo, &c.hi, &c.inv, &c.scale, &c.qlo, &c.qhi}) v->resize(n);
  double a = std::max(std::fabs(static_cast<double>(dlo)), std::fabs(static_cast<double>(dhi)));
  double l = std::min(static_cast<double>(dlo), 0.0), h = std::max(static_cast<double>(dhi), 0.0);
  for (size_t k = 0; k < n; ++k) {
    double i = static_cast<double>(k + 1);
    if (p.affine.scheme == AffineScheme::absmax) {
      float cc = static_cast<float>(a * i / static_cast<double>(n));
      c.lo[k] = -cc;
      c.hi[k] = cc;
    } else {
      c.lo[k] = static_cast<float>(l * i / static_cast<double>(n));
      c.hi[k] = static_cast<float>(h * i / static_cast<double>(n));
    }
    int32_t zp;
    group_params(c.lo[k], c.hi[k], p.affine, &c.scale[k], &c.inv[k], &zp);
    c.qlo[k] = static_cast<float>(p.affine.qmin - zp);
    c.qhi[k] = static_cast<float>(p.affine.qmax - zp);
  }
}

// Per-task scratch for the MSE search of many small groups.
struct MseScratch {
  Candidates cand;
  std::vector<double> obj, part;
};

// Objectives of one group: the kernel over chunks of kChunk values, summed in chunk
// order (the same sums whatever the thread count). parallel: spread chunks over threads.
void mse_group(const CalibKernels& k, const float* x, size_t n, const Candidates& c, bool parallel,
               double* obj, std::vector<double>& part) {
  size_t nc = c.lo.size(), nchunks = ceil_div(n, kChunk);
  std::fill(obj, obj + nc, 0.0);
  if (nchunks == 1) {  // the kernel adds into obj directly: the same sum as into a zeroed part
    k.mse_objective(x, n, c.inv.data(), c.scale.data(), c.qlo.data(), c.qhi.data(), nc, obj);
    return;
  }
  if (!parallel) {
    part.resize(nc);
    for (size_t j = 0; j < nchunks; ++j) {
      std::fill(part.begin(), part.end(), 0.0);
      size_t s = j * kChunk, len = std::min(kChunk, n - s);
      k.mse_objective(x + s, len, c.inv.data(), c.scale.data(), c.qlo.data(), c.qhi.data(), nc, part.data());
      for (size_t t = 0; t < nc; ++t) obj[t] += part[t];
    }
    return;
  }
  part.assign(nchunks * nc, 0.0);
  parallel_for(nchunks, 1, [&](size_t b, size_t e) {
    for (size_t j = b; j < e; ++j) {
      size_t s = j * kChunk, len = std::min(kChunk, n - s);
      k.mse_objective(x + s, len, c.inv.data(), c.scale.data(), c.qlo.data(), c.qhi.data(), nc,
                      &part[j * nc]);
    }
  });
  for (size_t j = 0; j < nchunks; ++j)
    for (size_t t = 0; t < nc; ++t) obj[t] += part[j * nc + t];
}

void mse_range(const CalibKernels& k, const float* x, size_t n, float dlo, float dhi, const CalibParams& p,
               bool parallel, MseScratch& w, float* lo, float* hi) {
  mse_candidates(dlo, dhi, p, w.cand);
  const Candidates& c = w.cand;
  w.obj.resize(c.lo.size());
  mse_group(k, x, n, c, parallel, w.obj.data(), w.part);
  size_t best = 0;
  for (size_t t = 1; t < w.obj.size(); ++t)
    if (w.obj[t] <= w.obj[best]) best = t;  // ties go to the larger clip
  *lo = c.lo[best];
  *hi = c.hi[best];
}

// ---- kl --------------------------------------------------------------------------------

void histogram(const CalibKernels& k, const float* x, size_t n, double s, bool parallel, uint64_t* hist) {
  std::fill(hist, hist + kKlBins, 0);
  size_t nchunks = ceil_div(n, kChunk * 16);
  if (!parallel || nchunks <= 1) {
    k.abs_histogram(x, n, s, hist);
    return;
  }
  std::vector<uint64_t> part(nchunks * kKlBins, 0);
  parallel_for(nchunks, 1, [&](size_t b, size_t e) {
    for (size_t j = b; j < e; ++j) {
      size_t st = j * kChunk * 16, len = std::min(kChunk * 16, n - st);
      k.abs_histogram(x + st, len, s, &part[j * kKlBins]);
    }
  });
  for (size_t j = 0; j < nchunks; ++j)
    for (int b = 0; b < kKlBins; ++b) hist[b] += part[j * kKlBins + b];
}

// KL(P||Q) for thresholds L..2048 via prefix sums: per threshold, one pass over
// the non-empty groups (found from the non-empty bins when those are fewer).
// The sums are SPEC 4's, regrouped: KL = (sum p ln p - Sp ln Sp - sum p ln qn) / Sp.
// prune (the search): thresholds whose last bin is empty while mass lies beyond
// (Q = 0 where P > 0) are evaluated last, and skipped (+inf) when a lower bound
// of their KL already exceeds the best other threshold plus the tie tolerance:
// with pl = beyond / Sp the eps term is pl ln(pl / eps), and the remaining terms
// are at least (1 - pl) ln(1 - pl) (log-sum inequality; Q's mass is all there).
// Such a threshold can then be neither the minimum nor tied with it. Sparse
// histograms (small groups) are mostly such thresholds.
void kl_all(const uint64_t* h, int bits, double* out, bool prune = false) {
  const int sh = bits - 1, L = 1 << sh;
  const double* tab = ln_table();
  std::vector<uint64_t> C(kKlBins + 1, 0), NZ(kKlBins + 1, 0);
  std::vector<double> HL(kKlBins + 1, 0.0);
  std::vector<int> nzbins;
  for (int b = 0; b < kKlBins; ++b) {
    C[b + 1] = C[b] + h[b];
    NZ[b + 1] = NZ[b] + (h[b] != 0);
    HL[b + 1] = HL[b] + (h[b] ? static_cast<double>(h[b]) * ln_u64(tab, h[b]) : 0.0);
    if (h[b]) nzbins.push_back(b);
  }
  const uint64_t total = C[kKlBins];
  const double Sp = static_cast<double>(total), lnSp = std::log(Sp), lnEps = std::log(kKlEps);
  auto is_eps = [&](int i) { return h[i - 1] == 0 && total - C[i] > 0; };
  double best = INFINITY;
  for (int pass = 0; pass < (prune ? 2 : 1); ++pass)
  for (int i = L; i <= kKlBins; ++i) {
    if (prune && is_eps(i) != (pass == 1)) continue;
    uint64_t Sq = C[i], beyond = total - Sq, plast = h[i - 1] + beyond;
    if (prune && pass == 1) {
      double pl = static_cast<double>(beyond) / Sp, lb = pl * (std::log(pl) - lnEps);
      if (pl < 1.0) lb += (1.0 - pl) * std::log1p(-pl);
      if (lb - 1e-12 > best + 1e-10 * std::fabs(best) + 1e-15) {
        out[i - L] = INFINITY;
        continue;
      }
    }
    double s = HL[i - 1] + (plast ? static_cast<double>(plast) * ln_u64(tab, plast) : 0.0);
    double cross = 0.0;
    if (Sq > 0) {
      double lnSq = ln_u64(tab, Sq);
      auto group = [&](long j) {
        size_t gs = (static_cast<size_t>(j) * i) >> sh, ge = (static_cast<size_t>(j + 1) * i) >> sh;  // / L
        uint64_t Q = C[ge] - C[gs];
        if (!Q) return;
        uint64_t nz = NZ[ge] - NZ[gs];
        double lq = ln_u64(tab, Q) - tab[nz] - lnSq;
        uint64_t pm = Q + ((ge == static_cast<size_t>(i) && h[i - 1]) ? beyond : 0);
        cross += static_cast<double>(pm) * lq;
      };
      if (NZ[i] < static_cast<uint64_t>(L)) {
        // group of bin b: the largest j with floor(j * i / L) <= b, i.e. ((b + 1) * L - 1) / i,
        // from a float64 reciprocal corrected by one step (an integer division is slow)
        const double inv_i = 1.0 / i;
        long prev = -1;
        for (int b : nzbins) {
          if (b >= i) break;
          long num = static_cast<long>(b + 1) * L - 1;
          long j = static_cast<long>(static_cast<double>(num) * inv_i);
          if (j * i > num) --j;
          else if ((j + 1) * i <= num) ++j;
          if (j != prev) group(j), prev = j;
        }
      } else {
        for (long j = 0; j < L; ++j) group(j);
      }
    }
    if (h[i - 1] == 0 && beyond > 0) cross += static_cast<double>(beyond) * lnEps;
    out[i - L] = (s - Sp * lnSp - cross) / Sp;
    best = std::min(best, out[i - L]);
  }
}

void kl_range(const CalibKernels& k, const float* x, size_t n, float dlo, float dhi, const CalibParams& p,
              bool parallel, float* lo, float* hi) {
  double a = std::max(std::fabs(static_cast<double>(dlo)), std::fabs(static_cast<double>(dhi)));
  if (a == 0.0) {
    *lo = *hi = 0.0f;
    return;
  }
  uint64_t hist[kKlBins];
  histogram(k, x, n, kKlBins / a, parallel, hist);
  const int L = 1 << (p.bits - 1);
  std::vector<double> kl(kKlBins - L + 1);
  kl_all(hist, p.bits, kl.data(), true);
  // The last minimum. The regrouped sums above differ from the reference's direct
  // ones by rounding (~1e-15 relative), and sparse histograms make exact ties
  // common (thresholds between non-empty bins give identical P and Q): values
  // within 1e-10 relative of the minimum count as tied, so those ties resolve
  // as the reference resolves them.
  double m = *std::min_element(kl.begin(), kl.end());
  double tol = 1e-10 * std::fabs(m) + 1e-15;
  size_t best = 0;
  for (size_t t = 0; t < kl.size(); ++t)
    if (kl[t] <= m + tol) best = t;
  float c = static_cast<float>((static_cast<double>(best + L) + 0.5) * (a / kKlBins));
  if (p.affine.scheme == AffineScheme::absmax) {
    *lo = -c;
    *hi = c;
  } else {
    *lo = std::max(dlo, -c);
    *hi = std::min(dhi, c);
  }
}

}  // namespace

void calib_clip(const float* x, const AffineLayout& L, const CalibParams& p, float* lo, float* hi) {
  size_t G = L.n_groups();
  if (G == 0) return;
  if (L.numel() == 0) {
    std::fill(lo, lo + G, 0.0f);
    std::fill(hi, hi + G, 0.0f);
    return;
  }
  const CalibKernels& k = calib_kernels();
  std::vector<float> rlo(G), rhi(G);
  affine_range(x, L, rlo.data(), rhi.data());  // throws NonFiniteError
  Groups g = gather(x, L);
  auto one = [&](size_t t, bool parallel, MseScratch& w) {
    const float* v = g.ptr[t];
    size_t n = g.len[t];
    if (n == 0) {
      lo[t] = hi[t] = 0.0f;
      return;
    }
    switch (p.method) {
      case CalibMethod::percentile: percentile_range(v, n, p, parallel, &lo[t], &hi[t]); break;
      case CalibMethod::mse: mse_range(k, v, n, rlo[t], rhi[t], p, parallel, w, &lo[t], &hi[t]); break;
      case CalibMethod::kl: kl_range(k, v, n, rlo[t], rhi[t], p, parallel, &lo[t], &hi[t]); break;
    }
  };
  if (G == 1) {
    MseScratch w;
    one(0, true, w);
    return;
  }
  size_t per = std::max<size_t>(1, g.len[0]);
  size_t grain = p.method == CalibMethod::mse ? std::max<size_t>(1, 2048 / per) : 1;
  parallel_for(G, grain, [&](size_t b, size_t e) {
    MseScratch w;
    for (size_t t = b; t < e; ++t) one(t, false, w);
  });
}

void calib_kl_divergences(const uint64_t* hist, int bits, double* out) { kl_all(hist, bits, out); }

void calib_kl_histogram(const float* x, size_t n, uint64_t* hist) {
  float lo = 0.0f, hi = 0.0f;
  AffineLayout L;
  L.a = 1, L.b = n, L.c = std::max<size_t>(n, 1);
  if (n) affine_range(x, L, &lo, &hi);
  double a = std::max(std::fabs(static_cast<double>(lo)), std::fabs(static_cast<double>(hi)));
  if (a == 0.0) {
    std::fill(hist, hist + kKlBins, 0);
    return;
  }
  histogram(calib_kernels(), x, n, kKlBins / a, true, hist);
}

void calib_mse_objectives(const float* x, size_t n, const CalibParams& p, double* out) {
  const CalibKernels& k = calib_kernels();
  float lo = INFINITY, hi = -INFINITY;
  for (size_t i = 0; i < n; ++i) lo = std::min(lo, x[i]), hi = std::max(hi, x[i]);
  if (n == 0) lo = hi = 0.0f;
  Candidates c;
  mse_candidates(lo, hi, p, c);
  std::vector<double> part;
  mse_group(k, x, n, c, true, out, part);
}

}  // namespace lowbit
