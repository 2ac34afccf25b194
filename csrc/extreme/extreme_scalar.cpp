// Extreme quantization kernels, portable scalar variant.
#include "extreme/extreme.h"
#include "extreme/extreme_ops.h"

namespace lowbit {
namespace {

void ternary_round(const float* x, size_t n, float inv, int8_t* q) {
  for (size_t i = 0; i < n; ++i) q[i] = ternary_round_one(x[i], inv);
}
void ternary_threshold(const float* x, size_t n, float a, float t, int8_t* q) {
  for (size_t i = 0; i < n; ++i) q[i] = ternary_threshold_one(x[i], a, t);
}
void binary_sign(const float* x, size_t n, float mu, int8_t* q) {
  for (size_t i = 0; i < n; ++i) q[i] = binary_sign_one(x[i], mu);
}

}  // namespace

const ExtremeKernels extreme_scalar = {block_sums_scalar, ternary_round, ternary_twn_scalar, ternary_threshold,
                                       binary_sign};

}  // namespace lowbit
