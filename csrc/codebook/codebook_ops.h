// Per-element codebook operations, the scalar definitions, shared by every ISA variant.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>

namespace lowbit {
namespace {

// argmin_j |v - cb[j]| (float32 differences), the lowest j on ties. Sorted cb:
// the float32 distance is monotone on each side of v, so the minimum is next to
// the insertion point; equal distances further left are walked to.
inline uint8_t nearest_code(float v, const float* cb, size_t k) {
  size_t lo = 0, hi = k;  // first index with cb[j] > v
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (cb[mid] > v) hi = mid;
    else lo = mid + 1;
  }
  size_t j = lo;
  size_t best;
  if (j == 0) {
    best = 0;
  } else if (j == k || std::fabs(v - cb[j - 1]) <= std::fabs(v - cb[j])) {
    best = j - 1;
    float d = std::fabs(v - cb[best]);
    while (best > 0 && std::fabs(v - cb[best - 1]) == d) --best;
  } else {
    best = j;
  }
  return static_cast<uint8_t>(best);
}

inline size_t lloyd_bin(float v, const float* mid, size_t k) {
  size_t lo = 0, hi = k - 1;  // count of mid[t] < v
  while (lo < hi) {
    size_t m = (lo + hi) / 2;
    if (mid[m] < v) lo = m + 1;
    else hi = m;
  }
  return lo;
}

// Lloyd accumulation with four banks (value i goes to bank i % 4), which breaks
// the dependency chain of repeated clusters; banks merge in order 0..3, so every
// ISA variant produces the same sums.
struct LloydBanks {
  uint64_t cnt[4][256];
  double sum[4][256];
  size_t k;
  explicit LloydBanks(size_t k_) : k(k_) {
    for (int b = 0; b < 4; ++b)
      for (size_t j = 0; j < k; ++j) cnt[b][j] = 0, sum[b][j] = 0.0;
  }
  void add(size_t i, size_t j, float v) {
    ++cnt[i & 3][j];
    sum[i & 3][j] += v;
  }
  void flush(uint64_t* c, double* s) const {
    for (size_t j = 0; j < k; ++j) {
      c[j] += cnt[0][j] + cnt[1][j] + cnt[2][j] + cnt[3][j];
      s[j] += ((sum[0][j] + sum[1][j]) + sum[2][j]) + sum[3][j];
    }
  }
};

}  // namespace
}  // namespace lowbit
