// Per-element affine operations, the scalar definition of SPEC 1. Included by
// every ISA variant (internal linkage) so that vector tails use exactly these.
#pragma once
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstddef>
#include <cstdint>

namespace lowbit {
namespace {

inline bool finite_f32(float v) { return v - v == 0.0f; }  // false for NaN and +-Inf

// Folds x[0..n) into (mn, mx); false if any value is NaN or Inf. The scalar range,
// and every vector variant's tail.
inline bool range_scalar(const float* x, size_t n, float& mn, float& mx) {
  bool ok = true;
  for (size_t i = 0; i < n; ++i) {
    float v = x[i];
    ok &= finite_f32(v);
    mn = v < mn ? v : mn;
    mx = v > mx ? v : mx;
  }
  return ok;
}

// clamp(round(v) + zp, qmin, qmax) == round(clamp(v, qmin - zp, qmax - zp)) + zp, because
// the bounds are integers and rounding is monotonic. Clamping first, in float, keeps the
// int conversion in range (x * inv may be huge when a clip range is given).
inline int32_t quantize_one(float x, float inv, int32_t zp, int32_t qmin, int32_t qmax) {
  float v = x * inv;
  float lo = static_cast<float>(qmin - zp), hi = static_cast<float>(qmax - zp);
  v = v < lo ? lo : (v > hi ? hi : v);
  return static_cast<int32_t>(std::nearbyint(v)) + zp;  // default mode: half to even
}

inline float dequantize_one(int32_t q, float scale, int32_t zp) {
  return scale * static_cast<float>(q - zp);
}

inline int32_t load_code(const uint8_t* q, size_t i, bool is_signed) {
  return is_signed ? static_cast<int32_t>(static_cast<int8_t>(q[i])) : static_cast<int32_t>(q[i]);
}

// SPEC 1-2: parameters in float64 from float32 endpoints, rounded once to float32.
// (Defined here so every variant computes them with the same instructions.)
inline void group_params(float lo, float hi, int scheme_minmax, int32_t qmin, int32_t qmax, int32_t absmax_qmax,
                         float* scale, float* inv, int32_t* zp) {
  float s;
  if (!scheme_minmax) {
    double a = std::max(std::fabs(static_cast<double>(lo)), std::fabs(static_cast<double>(hi)));
    s = static_cast<float>(a / absmax_qmax);
  } else {
    lo = std::min(lo, 0.0f);
    hi = std::max(hi, 0.0f);
    s = static_cast<float>((static_cast<double>(hi) - static_cast<double>(lo)) / (qmax - qmin));
  }
  s = std::max(s, FLT_MIN);
  float iv = 1.0f / s;
  int32_t z = 0;
  if (scheme_minmax) {
    float prod = lo * iv;
    z = qmin - static_cast<int32_t>(std::nearbyint(prod));
    z = std::min(std::max(z, qmin), qmax);
  }
  *scale = s;
  *inv = iv;
  *zp = z;
}

// Fused per-group quantization in batches: ranges of a batch of groups, then
// their parameters (independent divisions pipeline), then their codes while the
// batch is still in L1. Shared by every variant; `range`/`quantize` are the
// variant's own run kernels.
template <class RangeFn, class QuantFn>
inline bool quantize_groups_batched(RangeFn range, QuantFn quantize, const float* x, size_t len, size_t group,
                                    size_t g0, size_t g1, int scheme_minmax, int32_t qmin, int32_t qmax,
                                    int32_t absmax_qmax, const float* clip_lo, const float* clip_hi,
                                    uint8_t* codes, float* scale, int32_t* zp) {
  constexpr size_t kBatch = 32;
  size_t per_row = (len + group - 1) / group;
  float lo[kBatch], hi[kBatch], inv[kBatch];
  size_t off[kBatch], cnt[kBatch];
  bool ok = true;
  for (size_t gb = g0; gb < g1; gb += kBatch) {
    size_t nb = g1 - gb < kBatch ? g1 - gb : kBatch;
    for (size_t i = 0; i < nb; ++i) {
      size_t g = gb + i, r = g / per_row, s = (g % per_row) * group;
      off[i] = r * len + s;
      cnt[i] = len - s < group ? len - s : group;
      ok &= range(x + off[i], cnt[i], &lo[i], &hi[i]);
    }
    for (size_t i = 0; i < nb; ++i) {
      size_t g = gb + i;
      float l = clip_lo ? clip_lo[g] : lo[i], h = clip_hi ? clip_hi[g] : hi[i];
      group_params(l, h, scheme_minmax, qmin, qmax, absmax_qmax, &scale[g], &inv[i], &zp[g]);
    }
    for (size_t i = 0; i < nb; ++i) quantize(x + off[i], cnt[i], inv[i], zp[gb + i], qmin, qmax, codes + off[i]);
  }
  return ok;
}

}  // namespace
}  // namespace lowbit
