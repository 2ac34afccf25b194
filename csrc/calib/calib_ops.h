// Per-element calibration operations, the scalar definitions. Included by every
// ISA variant (internal linkage) so that vector tails use exactly these.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>

namespace lowbit {
namespace {

inline int kl_bin(float v, double s) {
  double t = static_cast<double>(std::fabs(v)) * s;  // >= 0, so truncation is floor
  int64_t b = static_cast<int64_t>(t);
  return b > 2047 ? 2047 : static_cast<int>(b);
}

// The float32 error of quantizing then dequantizing v with one candidate's parameters.
inline float mse_error(float v, float inv, float scale, float qlo, float qhi) {
  float t = v * inv;
  t = t < qlo ? qlo : (t > qhi ? qhi : t);
  float r = std::nearbyint(t);  // default rounding mode: half to even
  return v - scale * r;
}

}  // namespace
}  // namespace lowbit
