// Scalar definitions of the extreme kernels (SPEC 5), included by every ISA
// variant (internal linkage) so that vector tails use exactly these.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "extreme/extreme.h"

namespace lowbit {
namespace {

inline double lane_tree(const double* l) {  // l[16] -> the block value
  double s8[8], s4[4];
  for (int j = 0; j < 8; ++j) s8[j] = l[j] + l[j + 8];
  for (int j = 0; j < 4; ++j) s4[j] = s8[j] + s8[j + 4];
  double s2a = s4[0] + s4[2], s2b = s4[1] + s4[3];
  return s2a + s2b;
}

// Adds x[0..n) (n <= kSumBlock) to lanes, value i to lane (start + i) % 16.
inline void lanes_add(const float* x, size_t n, size_t start, double* abs_l, double* sum_l) {
  for (size_t i = 0; i < n; ++i) {
    size_t j = (start + i) % kSumLanes;
    abs_l[j] += static_cast<double>(std::fabs(x[i]));
    if (sum_l) sum_l[j] += static_cast<double>(x[i]);
  }
}

inline int8_t binary_sign_one(float x, float mu) {
  float d = x - mu;
  return static_cast<int8_t>(d >= 0.0f ? 1 : -1);
}

inline void block_sums_scalar(const float* x, size_t n, double* abs_out, double* sum_out, int8_t* sign_out) {
  for (size_t b = 0; b * kSumBlock < n; ++b) {
    size_t s = b * kSumBlock, len = n - s < kSumBlock ? n - s : kSumBlock;
    double al[kSumLanes] = {}, sl[kSumLanes] = {};
    lanes_add(x + s, len, 0, al, sum_out ? sl : nullptr);
    abs_out[b] = lane_tree(al);
    if (sum_out) sum_out[b] = lane_tree(sl);
    if (sign_out)
      for (size_t i = s; i < s + len; ++i) sign_out[i] = binary_sign_one(x[i], 0.0f);
  }
}

inline int8_t ternary_round_one(float x, float inv) {
  float v = x * inv;  // clamp(round_half_even(v), -1, 1) is +1 iff v > 0.5, -1 iff v < -0.5
  return static_cast<int8_t>((v > 0.5f) - (v < -0.5f));
}

inline int8_t ternary_threshold_one(float x, float a, float t) {
  float r = x / a;
  return static_cast<int8_t>((r > t) - (r < -t));
}

// TWN codes for x[0..n) starting at lane `start`, adding kept |x| to lanes.
inline size_t twn_lanes(const float* x, size_t n, size_t start, float delta, int8_t* q, double* lanes) {
  size_t kept = 0;
  for (size_t i = 0; i < n; ++i) {
    float a = std::fabs(x[i]);
    bool keep = a > delta;
    q[i] = static_cast<int8_t>(keep ? (x[i] > 0.0f ? 1 : -1) : 0);
    lanes[(start + i) % kSumLanes] += keep ? static_cast<double>(a) : 0.0;
    kept += keep;
  }
  return kept;
}

inline size_t ternary_twn_scalar(const float* x, size_t n, float delta, int8_t* q, double* kept_out) {
  size_t kept = 0;
  for (size_t b = 0; b * kSumBlock < n; ++b) {
    size_t s = b * kSumBlock, len = n - s < kSumBlock ? n - s : kSumBlock;
    double l[kSumLanes] = {};
    kept += twn_lanes(x + s, len, 0, delta, q + s, l);
    kept_out[b] = lane_tree(l);
  }
  return kept;
}

// Many small groups (one sum block each), for an ISA whose kernels are the
// static members of Ops. The arithmetic is quantize_group's in extreme.cpp.
template <class Ops>
bool small_groups_impl(const float* x, size_t count, size_t group, ExtremeMethod m, int8_t* q, float* scale) {
  const double dn = static_cast<double>(group);
  bool ok = true;
  for (size_t gi = 0; gi < count; ++gi) {
    const float* xs = x + gi * group;
    int8_t* qs = q + gi * group;
    double a, s = 0.0;
    Ops::block_sums(xs, group, &a, m == ExtremeMethod::bitnet ? &s : nullptr,
                    m == ExtremeMethod::sign ? qs : nullptr);
    a = 0.0 + a;  // the group total: block values added in order from 0.0
    s = 0.0 + s;
    if (!(a - a == 0.0)) {  // NaN or Inf in the group
      ok = false;
      continue;
    }
    switch (m) {
      case ExtremeMethod::absmean: {
        float g = static_cast<float>(a / dn);
        g = g > kAbsmeanEps ? g : kAbsmeanEps;
        Ops::ternary_round(xs, group, 1.0f / g, qs);
        scale[gi] = g;
        break;
      }
      case ExtremeMethod::twn: {
        double kept_sum;
        size_t kept = Ops::ternary_twn(xs, group, static_cast<float>(kTwnFactor * (a / dn)), qs, &kept_sum);
        scale[gi] = kept ? static_cast<float>((0.0 + kept_sum) / static_cast<double>(kept)) : 0.0f;
        break;
      }
      default: {  // sign (codes already written) and bitnet
        if (m == ExtremeMethod::bitnet) Ops::binary_sign(xs, group, static_cast<float>(s / dn), qs);
        scale[gi] = static_cast<float>(a / dn);
        break;
      }
    }
  }
  return ok;
}

}  // namespace
}  // namespace lowbit
