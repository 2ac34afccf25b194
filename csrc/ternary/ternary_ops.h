// Scalar definitions shared by every ISA variant of the ternary family (internal
// linkage), so vector tails compute exactly what the scalar path computes.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace lowbit {
namespace {

// y = float(acc) * (g_w / s_x) (SPEC 7); a bias is added to this afterwards.
inline float tl_out_one(int32_t acc, float gw, float sx) { return static_cast<float>(acc) * (gw / sx); }

}  // namespace
}  // namespace lowbit
