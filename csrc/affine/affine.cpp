// Affine driver: granularity, per-group parameters (SPEC 1-2) and threading.
// Baseline code; the per-ISA work is in the AffineKernels.
#include "affine/affine.h"

#include <algorithm>
#include <atomic>
#include <cfloat>
#include <cmath>
#include <vector>

#include "affine/affine_ops.h"
#include "core/common.h"
#include "core/parallel.h"

namespace lowbit {

LOWBIT_KERNEL_FAMILY_INSTANCE(affine);


size_t AffineLayout::n_groups() const {
  switch (kind) {
    case groups: return b == 0 ? 0 : a * ceil_div(b, c);
    case cols: return b;
    case channels: return b;
  }
  return 0;
}

namespace {

constexpr size_t kGrain = 1 << 15;  // values per task below which threads don't pay

void group_params(float lo, float hi, const AffineParams& p, float* scale, float* inv, int32_t* zp) {
  lowbit::group_params(lo, hi, p.scheme == AffineScheme::minmax, p.qmin, p.qmax, p.absmax_qmax, scale, inv, zp);
}

// lo[c] = min over parts p of plo[p * C + c]; hi likewise.
void combine_partials(const float* plo, const float* phi, size_t parts, size_t C, float* lo, float* hi) {
  for (size_t c = 0; c < C; ++c) {
    float mn = INFINITY, mx = -INFINITY;
    for (size_t p = 0; p < parts; ++p) {
      mn = std::min(mn, plo[p * C + c]);
      mx = std::max(mx, phi[p * C + c]);
    }
    lo[c] = mn;
    hi[c] = mx;
  }
}

// Range of one long run, split over threads.
bool range_parallel(const AffineKernels& k, const float* x, size_t n, float* lo, float* hi) {
  size_t nchunks = std::max<size_t>(1, std::min<size_t>(ceil_div(n, kGrain), 256));
  size_t chunk = ceil_div(std::max<size_t>(n, 1), nchunks);
  std::vector<float> plo(nchunks, INFINITY), phi(nchunks, -INFINITY);
  std::vector<char> pok(nchunks, 1);
  parallel_for(nchunks, 1, [&](size_t b, size_t e) {
    for (size_t j = b; j < e; ++j) {
      size_t s = j * chunk, len = s < n ? std::min(chunk, n - s) : 0;
      if (len) pok[j] = k.range(x + s, len, &plo[j], &phi[j]);
    }
  });
  float mn = INFINITY, mx = -INFINITY;
  bool ok = true;
  for (size_t j = 0; j < nchunks; ++j) {
    ok &= pok[j] != 0;
    mn = std::min(mn, plo[j]);
    mx = std::max(mx, phi[j]);
  }
  *lo = mn;
  *hi = mx;
  return ok;
}

// Per-group ranges for every layout; returns false on NaN/Inf.
bool ranges(const AffineKernels& k, const float* x, const AffineLayout& L, float* lo, float* hi) {
  std::atomic<bool> ok{true};
  if (L.kind == AffineLayout::groups) {
    size_t per_row = ceil_div(L.b, L.c), G = L.n_groups();
    if (G == 1) return range_parallel(k, x, L.b, lo, hi);
    parallel_for(G, std::max<size_t>(1, kGrain / L.c), [&](size_t b, size_t e) {
      bool good = true;
      for (size_t g = b; g < e; ++g) {
        size_t r = g / per_row, j = g % per_row, s = j * L.c;
        good &= k.range(x + r * L.b + s, std::min(L.c, L.b - s), lo + g, hi + g);
      }
      if (!good) ok = false;
    });
  } else if (L.kind == AffineLayout::cols) {
    size_t rows = L.a, C = L.b;
    size_t nblk = std::max<size_t>(1, std::min<size_t>(ceil_div(rows * C, kGrain), 64));
    nblk = std::min(nblk, rows);
    size_t rpb = ceil_div(rows, nblk);
    std::vector<float> plo(nblk * C, INFINITY), phi(nblk * C, -INFINITY);
    parallel_for(nblk, 1, [&](size_t b, size_t e) {
      for (size_t j = b; j < e; ++j) {
        size_t r0 = j * rpb, r1 = std::min(rows, r0 + rpb);
        if (r0 < r1 && !k.range_cols(x + r0 * C, r1 - r0, C, &plo[j * C], &phi[j * C])) ok = false;
      }
    });
    combine_partials(plo.data(), phi.data(), nblk, C, lo, hi);
  } else {
    size_t O = L.a, C = L.b, I = L.c, runs = O * C;
    std::vector<float> rlo(runs), rhi(runs);
    parallel_for(runs, std::max<size_t>(1, kGrain / I), [&](size_t b, size_t e) {
      bool good = true;
      for (size_t r = b; r < e; ++r) good &= k.range(x + r * I, I, &rlo[r], &rhi[r]);
      if (!good) ok = false;
    });
    combine_partials(rlo.data(), rhi.data(), O, C, lo, hi);
  }
  return ok;
}

}  // namespace

void affine_range(const float* x, const AffineLayout& layout, float* lo, float* hi) {
  if (layout.numel() == 0) return;
  if (!ranges(affine_kernels(), x, layout, lo, hi)) throw NonFiniteError();
}

void affine_quantize(const float* x, const AffineLayout& L, const AffineParams& p, const float* clip_lo,
                     const float* clip_hi, uint8_t* codes, float* scale, int32_t* zero_point) {
  const AffineKernels& k = affine_kernels();
  size_t G = L.n_groups();
  if (L.numel() == 0) return;

  // Groups that fit in cache: range, parameters and codes in one pass per group.
  if (L.kind == AffineLayout::groups && G > 1) {
    std::atomic<bool> ok{true};
    parallel_for(G, std::max<size_t>(1, kGrain / L.c), [&](size_t b, size_t e) {
      if (!k.quantize_groups(x, L.b, L.c, b, e, p, clip_lo, clip_hi, codes, scale, zero_point)) ok = false;
    });
    if (!ok) throw NonFiniteError();
    return;
  }

  // Otherwise two passes: all ranges, then all codes.
  std::vector<float> lo(G), hi(G), inv(G);
  if (!ranges(k, x, L, lo.data(), hi.data())) throw NonFiniteError();
  for (size_t g = 0; g < G; ++g) {
    float l = clip_lo ? clip_lo[g] : lo[g], h = clip_hi ? clip_hi[g] : hi[g];
    group_params(l, h, p, &scale[g], &inv[g], &zero_point[g]);
  }
  if (L.kind == AffineLayout::groups) {  // one group: the whole tensor
    size_t n = L.b;
    parallel_for(n, kGrain, [&](size_t b, size_t e) {
      k.quantize(x + b, e - b, inv[0], zero_point[0], p.qmin, p.qmax, codes + b);
    });
  } else if (L.kind == AffineLayout::cols) {
    size_t C = L.b;
    parallel_for(L.a, std::max<size_t>(1, kGrain / C), [&](size_t b, size_t e) {
      k.quantize_cols(x + b * C, e - b, C, inv.data(), zero_point, p.qmin, p.qmax, codes + b * C);
    });
  } else {
    size_t C = L.b, I = L.c;
    parallel_for(L.a * C, std::max<size_t>(1, kGrain / I), [&](size_t b, size_t e) {
      for (size_t r = b; r < e; ++r) {
        size_t c = r % C;
        k.quantize(x + r * I, I, inv[c], zero_point[c], p.qmin, p.qmax, codes + r * I);
      }
    });
  }
}

void affine_dequantize(const uint8_t* codes, bool is_signed, const AffineLayout& L, const float* scale,
                       const int32_t* zero_point, float* out) {
  const AffineKernels& k = affine_kernels();
  if (L.numel() == 0) return;
  if (L.kind == AffineLayout::groups) {
    size_t per_row = ceil_div(L.b, L.c), G = L.n_groups();
    if (G == 1) {
      parallel_for(L.b, kGrain, [&](size_t b, size_t e) {
        k.dequantize(codes + b, is_signed, e - b, scale[0], zero_point[0], out + b);
      });
      return;
    }
    parallel_for(G, std::max<size_t>(1, kGrain / L.c), [&](size_t b, size_t e) {
      for (size_t g = b; g < e; ++g) {
        size_t r = g / per_row, j = g % per_row, s = j * L.c, off = r * L.b + s;
        k.dequantize(codes + off, is_signed, std::min(L.c, L.b - s), scale[g], zero_point[g], out + off);
      }
    });
  } else if (L.kind == AffineLayout::cols) {
    size_t C = L.b;
    parallel_for(L.a, std::max<size_t>(1, kGrain / C), [&](size_t b, size_t e) {
      k.dequantize_cols(codes + b * C, is_signed, e - b, C, scale, zero_point, out + b * C);
    });
  } else {
    size_t C = L.b, I = L.c;
    parallel_for(L.a * C, std::max<size_t>(1, kGrain / I), [&](size_t b, size_t e) {
      for (size_t r = b; r < e; ++r) {
        size_t c = r % C;
        k.dequantize(codes + r * I, is_signed, I, scale[c], zero_point[c], out + r * I);
      }
    });
  }
}

}  // namespace lowbit
