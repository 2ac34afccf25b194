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

struct Ops {
  static void block_sums(const float* x, size_t n, double* a, double* s, int8_t* q) {
    block_sums_scalar(x, n, a, s, q);
  }
  static void ternary_round(const float* x, size_t n, float inv, int8_t* q) { lowbit::ternary_round(x, n, inv, q); }
  static size_t ternary_twn(const float* x, size_t n, float d, int8_t* q, double* k) {
    return ternary_twn_scalar(x, n, d, q, k);
  }
  static void binary_sign(const float* x, size_t n, float mu, int8_t* q) { lowbit::binary_sign(x, n, mu, q); }
};

bool small_groups(const float* x, size_t count, size_t group, ExtremeMethod m, int8_t* q, float* scale) {
  return small_groups_impl<Ops>(x, count, group, m, q, scale);
}

}  // namespace

const ExtremeKernels extreme_scalar = {block_sums_scalar, ternary_round, ternary_twn_scalar, ternary_threshold,
                                       binary_sign,       small_groups};

}  // namespace lowbit
