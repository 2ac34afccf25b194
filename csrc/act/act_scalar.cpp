// Activation quantization kernels, portable scalar variant.
#include "act/act.h"
#include "act/act_ops.h"

namespace lowbit {
namespace {

bool absmax(const float* x, size_t n, float* amax) {
  uint32_t m = 0;
  for (size_t i = 0; i < n; ++i) {
    uint32_t b = abs_bits(x[i]);
    m = b > m ? b : m;
  }
  *amax = bits_to_float(m);
  return m < kInfBits;
}

void quantize(const float* x, size_t n, float s, int32_t qmin, int32_t qmax, int8_t* q) {
  for (size_t i = 0; i < n; ++i) q[i] = act_quantize_one(x[i], s, qmin, qmax);
}

}  // namespace

const ActKernels act_scalar = {absmax, quantize};

}  // namespace lowbit
