// Per-element affine operations, the scalar definition of SPEC 1. Included by
// every ISA variant (internal linkage) so that vector tails use exactly these.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>

namespace lowbit {
namespace {

// Clamping the product to +-2^20 before rounding changes no code (codes are
// clamped to at most [-128, 255] afterwards) and keeps the int conversion exact.
constexpr float kQuantClampF = 1048576.0f;

inline bool finite_f32(float v) { return v - v == 0.0f; }  // false for NaN and +-Inf

inline int32_t quantize_one(float x, float inv, int32_t zp, int32_t qmin, int32_t qmax) {
  float v = x * inv;
  v = v < -kQuantClampF ? -kQuantClampF : (v > kQuantClampF ? kQuantClampF : v);
  int32_t q = static_cast<int32_t>(std::nearbyint(v)) + zp;  // default mode: half to even
  return q < qmin ? qmin : (q > qmax ? qmax : q);
}

inline float dequantize_one(int32_t q, float scale, int32_t zp) {
  return scale * static_cast<float>(q - zp);
}

inline int32_t load_code(const uint8_t* q, size_t i, bool is_signed) {
  return is_signed ? static_cast<int32_t>(static_cast<int8_t>(q[i])) : static_cast<int32_t>(q[i]);
}

}  // namespace
}  // namespace lowbit
