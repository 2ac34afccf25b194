// Scalar variant of the ternary family: the plain definition of the packed
// layout and of SPEC 5/7, used where no SIMD path exists and as the oracle the
// vector paths are tested against.
#include "ternary/ternary.h"
#include "ternary/ternary_ops.h"

namespace lowbit {
namespace {

int32_t sum_s8(const int8_t* q, size_t n) {
  int32_t total = 0;
  for (size_t k = 0; k < n; ++k) total += q[k];
  return total;
}

void gemm(int bits, const int8_t* q, size_t M, size_t ldq, const int32_t* qsum, const uint8_t* w, size_t ldw,
          size_t nblocks, size_t n0, size_t n1, int32_t* acc, size_t ldc, void*) {
  const int planes = 8 / bits;
  const unsigned mask = (1u << bits) - 1;
  for (size_t m = 0; m < M; ++m) {
    const int8_t* xr = q + m * ldq;
    for (size_t n = n0; n < n1; ++n) {
      const uint8_t* wr = w + n * ldw;
      int32_t S = 0;
      for (size_t b = 0; b < nblocks; ++b)
        for (int i = 0; i < planes; ++i)
          for (int j = 0; j < 32; ++j) {
            int32_t u = (wr[b * 32 + j] >> (bits * i)) & mask;
            S += u * xr[b * 32 * planes + 32 * i + j];
          }
      acc[m * ldc + (n - n0)] = (bits == 2 ? S : 2 * S) - qsum[m];
    }
  }
}

void epilogue(const int32_t* acc, size_t N, float sx, const float* gw, size_t gw_stride, const float* bias,
              float* y) {
  for (size_t n = 0; n < N; ++n) {
    float v = tl_out_one(acc[n], gw[n * gw_stride], sx);
    y[n] = bias ? v + bias[n] : v;
  }
}

}  // namespace

const TernaryKernels ternary_scalar = {sum_s8, gemm, epilogue};

}  // namespace lowbit
