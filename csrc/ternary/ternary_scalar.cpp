// Scalar variant of the ternary family: the plain definition of the packed
// layout and of SPEC 5/7 as tiles (ternary.h), used where no SIMD path exists
// and as the oracle the vector paths are tested against.
#include "ternary/ternary.h"
#include "ternary/ternary_ops.h"

namespace lowbit {
namespace {

constexpr size_t kDecChunk = 2048;

int32_t sum_s8(const int8_t* q, size_t n) {
  int32_t total = 0;
  for (size_t k = 0; k < n; ++k) total += q[k];
  return total;
}

// sum_k u[k] * x[k] over nblocks blocks of the packed row w.
int32_t dot_packed(int bits, const int8_t* x, const uint8_t* w, size_t nblocks) {
  const int planes = 8 / bits;
  const unsigned mask = (1u << bits) - 1;
  int32_t S = 0;
  for (size_t b = 0; b < nblocks; ++b)
    for (int i = 0; i < planes; ++i)
      for (int j = 0; j < 32; ++j) {
        int32_t u = (w[b * 32 + j] >> (bits * i)) & mask;
        S += u * x[b * 32 * planes + 32 * i + j];
      }
  return S;
}

void reg_1x4(int bits, const int8_t* x, const uint8_t* w, size_t ldw, size_t nrows, size_t nblocks, int32_t* U) {
  for (size_t j = 0; j < nrows; ++j) U[j] = dot_packed(bits, x, w + j * ldw, nblocks);
}

void reg_rows(int bits, const int8_t* x, size_t ldx, int mr, const uint8_t* w, size_t ldw, size_t nrows,
              size_t nblocks, int32_t* U, size_t ldu) {
  for (size_t j = 0; j < nrows; ++j)
    for (int i = 0; i < mr; ++i) U[i * ldu + j] = dot_packed(bits, x + i * ldx, w + j * ldw, nblocks);
}

void decode(int bits, const uint8_t* w, size_t ldw, size_t rows, size_t nblocks, uint8_t* wb) {
  const int planes = 8 / bits;
  const unsigned mask = (1u << bits) - 1;
  for (size_t r = 0; r < rows; ++r)
    for (size_t b = 0; b < nblocks; ++b)
      for (int i = 0; i < planes; ++i)
        for (int j = 0; j < 32; ++j)
          wb[r * kDecChunk + (b * planes + i) * 32 + j] =
              static_cast<uint8_t>((w[r * ldw + b * 32 + j] >> (bits * i)) & mask);
}

// Accumulators are plain int32 totals.
void dec_tile(const int8_t* x, size_t ldx, int mr, const uint8_t* wb, size_t nr, size_t len, void* acc_,
              size_t ldacc) {
  int32_t* acc = static_cast<int32_t*>(acc_);
  for (int i = 0; i < mr; ++i)
    for (size_t j = 0; j < nr; ++j) {
      const int8_t* xi = x + i * ldx;
      const uint8_t* uj = wb + j * kDecChunk;
      int32_t S = 0;
      for (size_t k = 0; k < len; ++k) S += uj[k] * xi[k];
      acc[i * ldacc + j] += S;
    }
}

void dec_reduce(const void* acc, size_t n, int32_t* U) {
  const int32_t* a = static_cast<const int32_t*>(acc);
  for (size_t r = 0; r < n; ++r) U[r] = a[r];
}

void epilogue(const int32_t* acc, size_t N, float sx, const float* gw, size_t gw_stride, const float* bias,
              float* y) {
  for (size_t n = 0; n < N; ++n) {
    float v = tl_out_one(acc[n], gw[n * gw_stride], sx);
    y[n] = bias ? v + bias[n] : v;
  }
}

}  // namespace

const TernaryKernels ternary_scalar = {
    /*reg_max_rows=*/6, /*reg_k_blocks=*/1, /*dec_max_rows=*/6, /*dec_chunk=*/kDecChunk,
    /*dec_acc_bytes=*/sizeof(int32_t), /*dec_min_rows=*/14,
    sum_s8, reg_1x4, reg_rows, decode, dec_tile, dec_reduce, epilogue};

}  // namespace lowbit
