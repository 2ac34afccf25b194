// Per-element operations of SPEC 5, the scalar definition. Included by every ISA
// variant (internal linkage) so that vector tails use exactly these.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

namespace lowbit {
namespace {

constexpr float kActEps = 1e-5f;  // SPEC 5's floor on max|x_row|, as float32

// |x| as its IEEE bit pattern: for non-negative floats the integer order is the
// float order, and anything >= 0x7f800000 is Inf or NaN.
inline uint32_t abs_bits(float x) {
  uint32_t b;
  std::memcpy(&b, &x, sizeof b);
  return b & 0x7fffffffu;
}

inline float bits_to_float(uint32_t b) {
  float f;
  std::memcpy(&f, &b, sizeof f);
  return f;
}

constexpr uint32_t kInfBits = 0x7f800000u;

// s = qmax / max(amax, 1e-5f): one float32 division.
inline float act_scale(float amax, int32_t qmax) {
  return static_cast<float>(qmax) / (amax > kActEps ? amax : kActEps);
}

inline int8_t act_quantize_one(float x, float s, int32_t qmin, int32_t qmax) {
  int32_t q = static_cast<int32_t>(std::nearbyint(x * s));  // default mode: half to even
  return static_cast<int8_t>(q < qmin ? qmin : (q > qmax ? qmax : q));
}

}  // namespace
}  // namespace lowbit
