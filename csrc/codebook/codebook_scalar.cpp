// Codebook kernels, portable scalar variant.
#include "codebook/codebook.h"
#include "codebook/codebook_ops.h"

namespace lowbit {
namespace {

void quantize(const float* x, size_t n, float scale, const float* cb, size_t k, uint8_t* out) {
  for (size_t i = 0; i < n; ++i) out[i] = nearest_code(x[i] / scale, cb, k);
}

void dequantize(const uint8_t* q, size_t n, float scale, const float* cb, float* out) {
  for (size_t i = 0; i < n; ++i) out[i] = scale * cb[q[i]];
}

void assign(const float* x, size_t n, const float* mid, size_t k, uint64_t* cnt, double* sum) {
  LloydBanks bank(k);
  for (size_t i = 0; i < n; ++i) bank.add(i, lloyd_bin(x[i], mid, k), x[i]);
  bank.flush(cnt, sum);
}

}  // namespace

const CodebookKernels codebook_scalar = {quantize, dequantize, assign};

}  // namespace lowbit
