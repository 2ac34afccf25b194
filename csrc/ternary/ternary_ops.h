// Scalar definitions shared by every ISA variant of the ternary family (internal
// linkage), so vector tails compute exactly what the scalar path computes.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace lowbit {
namespace {

inline uint32_t tl_abs_bits(float v) {
  uint32_t b;
  std::memcpy(&b, &v, 4);
  return b & 0x7fffffffu;
}

// s = 127 / max(amax, 1e-5) in float32 (SPEC 5).
inline float tl_scale(float amax) {
  const float lo = 1e-5f;
  return 127.0f / (amax > lo ? amax : lo);
}

inline int32_t tl_quantize_one(float x, float s) {
  float v = x * s;  // |v| <= 127 (+ rounding) since |x| <= amax
  int32_t q = static_cast<int32_t>(std::nearbyint(v));  // half to even
  return q < -128 ? -128 : (q > 127 ? 127 : q);
}

// y = float(acc) * (g_w / s_x) (SPEC 7); a bias is added to this afterwards.
inline float tl_out_one(int32_t acc, float gw, float sx) { return static_cast<float>(acc) * (gw / sx); }

}  // namespace
}  // namespace lowbit
