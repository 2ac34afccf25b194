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

}  // namespace
}  // namespace lowbit
