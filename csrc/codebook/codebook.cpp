// Codebook driver: groups and threading for lookup, and 1-D k-means.
// Baseline code; the per-ISA work is in the CodebookKernels (and AffineKernels::range).
#include "codebook/codebook.h"

#include <algorithm>
#include <atomic>
#include <cfloat>
#include <cmath>
#include <vector>

#include "affine/affine.h"
#include "core/common.h"
#include "core/parallel.h"

namespace lowbit {

LOWBIT_KERNEL_FAMILY_INSTANCE(codebook);

namespace {

constexpr size_t kGrain = 1 << 15;
constexpr int kLloydSteps = 3;

float absmax_scale(float lo, float hi, float cb_maxabs) {
  double a = std::max(std::fabs(static_cast<double>(lo)), std::fabs(static_cast<double>(hi)));
  return std::max(static_cast<float>(a / cb_maxabs), FLT_MIN);
}

}  // namespace

void codebook_quantize(const float* x, const CodebookLayout& L, const float* cb, bool absmax_scaled,
                       float cb_maxabs, float* scale, uint8_t* codes) {
  const CodebookKernels& k = codebook_kernels();
  const AffineKernels& ak = affine_kernels();
  size_t G = L.n_groups(), per_row = G ? (L.len + L.group - 1) / L.group : 0;
  if (G == 0) return;
  if (G == 1) {  // one group: the whole tensor, split over threads
    float lo, hi;
    AffineLayout al;
    al.a = 1, al.b = L.len * L.rows, al.c = al.b;
    affine_range(x, al, &lo, &hi);  // throws NonFiniteError
    if (absmax_scaled) scale[0] = absmax_scale(lo, hi, cb_maxabs);
    parallel_for(al.b, kGrain, [&](size_t b, size_t e) { k.quantize(x + b, e - b, scale[0], cb, L.k, codes + b); });
    return;
  }
  std::atomic<bool> ok{true};
  parallel_for(G, std::max<size_t>(1, kGrain / L.group), [&](size_t b, size_t e) {
    bool good = true;
    for (size_t g = b; g < e; ++g) {
      size_t r = g / per_row, s = (g % per_row) * L.group, n = std::min(L.group, L.len - s);
      const float* xs = x + r * L.len + s;
      float lo, hi;
      good &= ak.range(xs, n, &lo, &hi);
      if (absmax_scaled) scale[g] = absmax_scale(lo, hi, cb_maxabs);
      k.quantize(xs, n, scale[g], cb + (L.cb_per_group ? g * L.k : 0), L.k, codes + r * L.len + s);
    }
    if (!good) ok = false;
  });
  if (!ok) throw NonFiniteError();
}

void codebook_dequantize(const uint8_t* codes, const CodebookLayout& L, const float* scale, const float* cb,
                         float* out) {
  const CodebookKernels& k = codebook_kernels();
  size_t G = L.n_groups(), per_row = G ? (L.len + L.group - 1) / L.group : 0;
  if (G == 0) return;
  if (G == 1) {
    parallel_for(L.len * L.rows, kGrain,
                 [&](size_t b, size_t e) { k.dequantize(codes + b, e - b, scale[0], cb, out + b); });
    return;
  }
  parallel_for(G, std::max<size_t>(1, kGrain / L.group), [&](size_t b, size_t e) {
    for (size_t g = b; g < e; ++g) {
      size_t r = g / per_row, s = (g % per_row) * L.group, n = std::min(L.group, L.len - s), off = r * L.len + s;
      k.dequantize(codes + off, n, scale[g], cb + (L.cb_per_group ? g * L.k : 0), out + off);
    }
  });
}

// ---- k-means ----------------------------------------------------------------------------

namespace {

// Exact weighted 1-D k-means on sorted points (Wang & Song 2011), with the
// divide-and-conquer speed-up (the optimal start of the last cluster is monotone
// in the end point). Cluster costs come from prefix sums of the points centred
// at the midpoint of their range. python/lowbit/reference/codebook.py mirrors
// every operation, so both return the same centroids.
struct Dp {
  size_t m;
  std::vector<double> S1, S2, W;
  double center;
  double cost(size_t j, size_t i) const {  // points j..i inclusive
    double s1 = S1[i + 1] - S1[j], s2 = S2[i + 1] - S2[j], w = W[i + 1] - W[j];
    double c = s2 - s1 * s1 / w;
    return c > 0.0 ? c : 0.0;
  }
};

void dp_solve(const Dp& d, const double* prev, double* cur, uint32_t* arg, size_t q, long ilo, long ihi, size_t jlo,
              size_t jhi) {
  while (ilo <= ihi) {
    long mid = (ilo + ihi) / 2;
    size_t im = static_cast<size_t>(mid);
    size_t jb = std::max(jlo, q), je = std::min(jhi, im);
    double best = INFINITY;
    size_t bj = jb;
    for (size_t j = jb; j <= je; ++j) {
      double v = prev[j - 1] + d.cost(j, im);
      if (v < best) best = v, bj = j;
    }
    cur[im] = best;
    arg[im] = static_cast<uint32_t>(bj);
    dp_solve(d, prev, cur, arg, q, ilo, mid - 1, jlo, bj);
    ilo = mid + 1;  // tail call on the right half
    jlo = bj;
  }
}

void kmeans_exact(const double* p, const double* w, size_t m, size_t k, double* cent) {
  if (m <= k) {
    for (size_t t = 0; t < k; ++t) cent[t] = p[std::min(t, m - 1)];
    return;
  }
  Dp d;
  d.m = m;
  d.center = (p[0] + p[m - 1]) / 2;
  d.S1.assign(m + 1, 0.0), d.S2.assign(m + 1, 0.0), d.W.assign(m + 1, 0.0);
  for (size_t i = 0; i < m; ++i) {
    double v = p[i] - d.center;
    d.S1[i + 1] = d.S1[i] + w[i] * v;
    d.S2[i + 1] = d.S2[i] + w[i] * (v * v);
    d.W[i + 1] = d.W[i] + w[i];
  }
  std::vector<double> prev(m), cur(m);
  std::vector<uint32_t> arg(k * m, 0);
  for (size_t i = 0; i < m; ++i) prev[i] = d.cost(0, i);
  for (size_t q = 1; q < k; ++q) {
    std::fill(cur.begin(), cur.end(), INFINITY);
    dp_solve(d, prev.data(), cur.data(), &arg[q * m], q, static_cast<long>(q), static_cast<long>(m - 1), q, m - 1);
    std::swap(prev, cur);
  }
  size_t i = m - 1;
  for (size_t q = k - 1;; --q) {
    size_t j = q ? arg[q * m + i] : 0;
    cent[q] = d.center + (d.S1[i + 1] - d.S1[j]) / (d.W[i + 1] - d.W[j]);
    if (q == 0) break;
    i = j - 1;
  }
}

void store_centroids(const double* c, size_t k, float* out) {
  for (size_t t = 0; t < k; ++t) out[t] = static_cast<float>(c[t]);
  for (size_t t = 1; t < k; ++t) out[t] = std::max(out[t], out[t - 1]);  // keep sorted
}

void kmeans_small(const float* x, size_t n, size_t k, float* out) {
  std::vector<float> v(x, x + n);
  std::sort(v.begin(), v.end());
  std::vector<double> p, w;
  for (size_t i = 0; i < n;) {
    size_t j = i;
    while (j < n && v[j] == v[i]) ++j;
    p.push_back(v[i]);
    w.push_back(static_cast<double>(j - i));
    i = j;
  }
  std::vector<double> c(k);
  kmeans_exact(p.data(), w.data(), p.size(), k, c.data());
  store_centroids(c.data(), k, out);
}

void kmeans_large(const float* x, size_t n, size_t k, bool parallel, float* out) {
  const CodebookKernels& kk = codebook_kernels();
  float lo, hi;
  AffineLayout al;
  al.a = 1, al.b = n, al.c = n;
  if (parallel) {
    affine_range(x, al, &lo, &hi);
  } else if (!affine_kernels().range(x, n, &lo, &hi)) {
    throw NonFiniteError();
  }
  if (lo == hi) {
    for (size_t t = 0; t < k; ++t) out[t] = lo;
    return;
  }
  // 1. A fine histogram (count and sum per bin): its bins are weighted atoms.
  constexpr size_t B = 1 << 16;
  const double s = static_cast<double>(B) / (static_cast<double>(hi) - static_cast<double>(lo));
  size_t nchunks = parallel ? std::min<size_t>(16, ceil_div(n, 1 << 20)) : 1;
  size_t chunk = ceil_div(n, nchunks);
  std::vector<uint64_t> hc(nchunks * B, 0);
  std::vector<double> hs(nchunks * B, 0.0);
  auto bin_of = [&](float v) {
    size_t b = static_cast<size_t>((static_cast<double>(v) - lo) * s);
    return b >= B ? B - 1 : b;
  };
  parallel_for(nchunks, 1, [&](size_t b, size_t e) {
    for (size_t j = b; j < e; ++j) {
      uint64_t* c = &hc[j * B];
      double* su = &hs[j * B];
      for (size_t i = j * chunk, end = std::min(n, (j + 1) * chunk); i < end; ++i) {
        size_t t = bin_of(x[i]);
        ++c[t];
        su[t] += x[i];
      }
    }
  });
  std::vector<double> p, w;
  for (size_t t = 0; t < B; ++t) {
    uint64_t c = 0;
    double su = 0.0;
    for (size_t j = 0; j < nchunks; ++j) c += hc[j * B + t], su += hs[j * B + t];
    if (c) {
      p.push_back(su / static_cast<double>(c));
      w.push_back(static_cast<double>(c));
    }
  }
  for (size_t t = 1; t < p.size(); ++t) p[t] = std::max(p[t], p[t - 1]);
  // 2. The exact optimum over the atoms.
  std::vector<double> c(k);
  kmeans_exact(p.data(), w.data(), p.size(), k, c.data());
  // 3. Lloyd steps on the raw values (assignment by midpoints, means in float64).
  std::vector<float> mid(k), cf(k);
  store_centroids(c.data(), k, cf.data());
  size_t lchunks = parallel ? std::max<size_t>(1, std::min<size_t>(64, ceil_div(n, 1 << 18))) : 1;
  size_t lchunk = ceil_div(n, lchunks);
  std::vector<uint64_t> cnt(lchunks * k);
  std::vector<double> sum(lchunks * k);
  // The exact optimum over the atoms differs from the optimum over the values only
  // where a bin straddles a cluster boundary; a few Lloyd steps (each never raises
  // the objective) move the boundaries off the bin grid. More steps buy no
  // measurable error on real weights, so the count is fixed (deterministic).
  for (int iter = 0; iter < kLloydSteps; ++iter) {
    for (size_t t = 0; t + 1 < k; ++t)
      mid[t] = static_cast<float>((static_cast<double>(cf[t]) + static_cast<double>(cf[t + 1])) / 2);
    std::fill(cnt.begin(), cnt.end(), 0);
    std::fill(sum.begin(), sum.end(), 0.0);
    parallel_for(lchunks, 1, [&](size_t b, size_t e) {
      for (size_t j = b; j < e; ++j) {
        size_t st = j * lchunk, len = st < n ? std::min(lchunk, n - st) : 0;
        kk.assign(x + st, len, mid.data(), k, &cnt[j * k], &sum[j * k]);
      }
    });
    bool changed = false;
    for (size_t t = 0; t < k; ++t) {
      uint64_t ct = 0;
      double st = 0.0;
      for (size_t j = 0; j < lchunks; ++j) ct += cnt[j * k + t], st += sum[j * k + t];
      if (ct) c[t] = st / static_cast<double>(ct);
      else c[t] = cf[t];
    }
    std::vector<float> nf(k);
    store_centroids(c.data(), k, nf.data());
    for (size_t t = 0; t < k; ++t) changed |= nf[t] != cf[t];
    cf.swap(nf);
    if (!changed) break;
  }
  std::copy(cf.begin(), cf.end(), out);
}

void kmeans_row(const float* x, size_t n, size_t k, bool parallel, float* out) {
  if (n == 0) {
    std::fill(out, out + k, 0.0f);
    return;
  }
  if (n <= kKmeansExact) {
    float lo, hi;
    if (!affine_kernels().range(x, n, &lo, &hi)) throw NonFiniteError();
    kmeans_small(x, n, k, out);
  } else {
    kmeans_large(x, n, k, parallel, out);
  }
}

}  // namespace

void kmeans_1d(const float* x, size_t rows, size_t len, size_t k, float* centroids) {
  if (rows == 1) {
    kmeans_row(x, len, k, true, centroids);
    return;
  }
  parallel_for(rows, 1, [&](size_t b, size_t e) {
    for (size_t r = b; r < e; ++r) kmeans_row(x + r * len, len, k, false, centroids + r * k);
  });
}

}  // namespace lowbit
