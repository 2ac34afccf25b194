// Extreme quantization driver: groups, per-group scales (SPEC 5), threading.
#include "extreme/extreme.h"

#include <algorithm>
#include <atomic>
#include <cfloat>
#include <cmath>
#include <vector>

#include "core/common.h"
#include "core/parallel.h"

namespace lowbit {

LOWBIT_KERNEL_FAMILY_INSTANCE(extreme);

namespace {

constexpr size_t kGrainBlocks = 8;          // blocks of kSumBlock per task
constexpr size_t kGrainValues = 1 << 15;    // values per task for many small groups

// fn(first block, end block) over ceil(n / kSumBlock) blocks; inline when small.
template <class Fn>
void over_blocks(size_t n, Fn&& fn) {
  size_t nb = ceil_div(n, kSumBlock);
  if (nb <= kGrainBlocks) fn(size_t{0}, nb);
  else parallel_for(nb, kGrainBlocks, [&](size_t b, size_t e) { fn(b, e); });
}

size_t block_len(size_t n, size_t b0, size_t b1) { return std::min(n, b1 * kSumBlock) - b0 * kSumBlock; }

double ordered_total(const double* blocks, size_t nb) {
  double t = 0.0;
  for (size_t b = 0; b < nb; ++b) t += blocks[b];
  return t;
}

// One group of n >= 1 contiguous values: codes and scale. False on NaN/Inf.
bool quantize_group(const ExtremeKernels& k, const float* x, size_t n, ExtremeMethod m, float t, int8_t* q,
                    float* scale) {
  const size_t nb = ceil_div(n, kSumBlock);
  // Per-block partial results; on the stack for groups of up to 4 blocks.
  double small_a[4], small_s[4];
  float small_lo[4], small_hi[4];
  std::vector<double> big_a, big_s;
  std::vector<float> big_lo, big_hi;
  double *abs_b = small_a, *sum_b = small_s;
  float *lo = small_lo, *hi = small_hi;
  if (nb > 4) {
    big_a.resize(nb), big_s.resize(nb), big_lo.resize(nb), big_hi.resize(nb);
    abs_b = big_a.data(), sum_b = big_s.data(), lo = big_lo.data(), hi = big_hi.data();
  }
  const double dn = static_cast<double>(n);

  if (m == ExtremeMethod::threshold) {
    const AffineKernels& ak = affine_kernels();
    std::atomic<bool> ok{true};
    over_blocks(n, [&](size_t b0, size_t b1) {
      for (size_t b = b0; b < b1; ++b)
        if (!ak.range(x + b * kSumBlock, block_len(n, b, b + 1), &lo[b], &hi[b])) ok = false;
    });
    if (!ok) return false;
    float a = 0.0f;
    for (size_t b = 0; b < nb; ++b) a = std::max(a, std::max(std::fabs(lo[b]), std::fabs(hi[b])));
    a = std::max(a, FLT_MIN);
    *scale = a;
    over_blocks(n, [&](size_t b0, size_t b1) {
      k.ternary_threshold(x + b0 * kSumBlock, block_len(n, b0, b1), a, t, q + b0 * kSumBlock);
    });
    return true;
  }

  const bool want_sum = m == ExtremeMethod::bitnet, sign = m == ExtremeMethod::sign;
  over_blocks(n, [&](size_t b0, size_t b1) {
    k.block_sums(x + b0 * kSumBlock, block_len(n, b0, b1), abs_b + b0, want_sum ? sum_b + b0 : nullptr,
                 sign ? q + b0 * kSumBlock : nullptr);
  });
  const double abs_total = ordered_total(abs_b, nb);
  if (!std::isfinite(abs_total)) return false;

  switch (m) {
    case ExtremeMethod::absmean: {
      float g = std::max(static_cast<float>(abs_total / dn), kAbsmeanEps);
      float inv = 1.0f / g;
      *scale = g;
      over_blocks(n, [&](size_t b0, size_t b1) {
        k.ternary_round(x + b0 * kSumBlock, block_len(n, b0, b1), inv, q + b0 * kSumBlock);
      });
      break;
    }
    case ExtremeMethod::twn: {
      float delta = static_cast<float>(kTwnFactor * (abs_total / dn));
      std::atomic<size_t> kept{0};
      over_blocks(n, [&](size_t b0, size_t b1) {
        kept += k.ternary_twn(x + b0 * kSumBlock, block_len(n, b0, b1), delta, q + b0 * kSumBlock, sum_b + b0);
      });
      size_t kc = kept;
      *scale = kc ? static_cast<float>(ordered_total(sum_b, nb) / static_cast<double>(kc)) : 0.0f;
      break;
    }
    case ExtremeMethod::sign:  // codes written with the sums
      *scale = static_cast<float>(abs_total / dn);
      break;
    case ExtremeMethod::bitnet: {
      float mu = static_cast<float>(ordered_total(sum_b, nb) / dn);
      *scale = static_cast<float>(abs_total / dn);
      over_blocks(n, [&](size_t b0, size_t b1) {
        k.binary_sign(x + b0 * kSumBlock, block_len(n, b0, b1), mu, q + b0 * kSumBlock);
      });
      break;
    }
    default: break;
  }
  return true;
}

}  // namespace

void extreme_quantize(const float* x, const AffineLayout& L, ExtremeMethod m, float t, int8_t* codes,
                      float* scale) {
  const ExtremeKernels& k = extreme_kernels();
  const size_t G = L.n_groups();
  if (L.numel() == 0 || G == 0) return;
  std::atomic<bool> ok{true};

  if (L.kind == AffineLayout::groups) {
    size_t per_row = ceil_div(L.b, L.c);
    if (G == 1) {
      if (!quantize_group(k, x, L.b, m, t, codes, scale)) throw NonFiniteError();
      return;
    }
    if (L.c <= kSumBlock && m != ExtremeMethod::threshold) {
      // Small groups: runs of whole groups through one kernel call; with
      // L.b % L.c == 0 the whole tensor is one run, else each row's last group is apart.
      size_t full = L.b / L.c, rem = L.b % L.c;
      if (rem == 0) {
        parallel_for(G, std::max<size_t>(1, kGrainValues / L.c), [&](size_t b, size_t e) {
          if (!k.small_groups(x + b * L.c, e - b, L.c, m, codes + b * L.c, scale + b)) ok = false;
        });
      } else {
        parallel_for(L.a, std::max<size_t>(1, kGrainValues / L.b), [&](size_t b, size_t e) {
          bool good = true;
          for (size_t r = b; r < e; ++r) {
            size_t off = r * L.b;
            good &= k.small_groups(x + off, full, L.c, m, codes + off, scale + r * per_row);
            good &= quantize_group(k, x + off + full * L.c, rem, m, t, codes + off + full * L.c,
                                   scale + r * per_row + full);
          }
          if (!good) ok = false;
        });
      }
      if (!ok) throw NonFiniteError();
      return;
    }
    parallel_for(G, std::max<size_t>(1, (1u << 15) / L.c), [&](size_t b, size_t e) {
      bool good = true;
      for (size_t g = b; g < e; ++g) {
        size_t r = g / per_row, s = (g % per_row) * L.c, off = r * L.b + s;
        good &= quantize_group(k, x + off, std::min(L.c, L.b - s), m, t, codes + off, scale + g);
      }
      if (!good) ok = false;
    });
  } else if (L.kind == AffineLayout::cols) {
    // Column c of a rows x C matrix: gather tiles of up to 16 columns, row by row.
    const size_t rows = L.a, C = L.b, tile = 16;
    parallel_for(ceil_div(C, tile), 1, [&](size_t b, size_t e) {
      std::vector<float> buf(tile * rows);
      std::vector<int8_t> qbuf(tile * rows);
      bool good = true;
      for (size_t tb = b; tb < e; ++tb) {
        size_t c0 = tb * tile, w = std::min(tile, C - c0);
        for (size_t r = 0; r < rows; ++r)
          for (size_t j = 0; j < w; ++j) buf[j * rows + r] = x[r * C + c0 + j];
        for (size_t j = 0; j < w; ++j)
          good &= quantize_group(k, &buf[j * rows], rows, m, t, &qbuf[j * rows], scale + c0 + j);
        for (size_t r = 0; r < rows; ++r)
          for (size_t j = 0; j < w; ++j) codes[r * C + c0 + j] = qbuf[j * rows + r];
      }
      if (!good) ok = false;
    });
  } else {
    // Channel c of outer x C x inner: the runs x[o, c, :] in order of o.
    const size_t O = L.a, C = L.b, I = L.c;
    parallel_for(C, 1, [&](size_t b, size_t e) {
      std::vector<float> buf(O * I);
      std::vector<int8_t> qbuf(O * I);
      bool good = true;
      for (size_t c = b; c < e; ++c) {
        for (size_t o = 0; o < O; ++o) std::copy_n(x + (o * C + c) * I, I, &buf[o * I]);
        good &= quantize_group(k, buf.data(), O * I, m, t, qbuf.data(), scale + c);
        for (size_t o = 0; o < O; ++o) std::copy_n(&qbuf[o * I], I, codes + (o * C + c) * I);
      }
      if (!good) ok = false;
    });
  }
  if (!ok) throw NonFiniteError();
}

}  // namespace lowbit
