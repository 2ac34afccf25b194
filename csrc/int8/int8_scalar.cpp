// int8 GEMM micro-kernel, portable scalar variant (wrapping int32 via uint32).
#include "int8/int8.h"

namespace lowbit {
namespace {

void tile(const int16_t* a, size_t lda, int mr, const int8_t* panel, size_t kpairs, int32_t* c) {
  for (int r = 0; r < mr; ++r) {
    const int16_t* ar = a + static_cast<size_t>(r) * lda;
    uint32_t acc[kInt8NR] = {};
    for (size_t kp = 0; kp < kpairs; ++kp) {
      const int8_t* b = panel + kp * 2 * kInt8NR;
      int32_t a0 = ar[2 * kp], a1 = ar[2 * kp + 1];
      for (size_t j = 0; j < kInt8NR; ++j)
        acc[j] += static_cast<uint32_t>(a0 * b[2 * j] + a1 * b[2 * j + 1]);
    }
    for (size_t j = 0; j < kInt8NR; ++j) c[r * kInt8NR + j] = static_cast<int32_t>(acc[j]);
  }
}

void tile_u7(const int8_t* a, size_t lda, int mr, const uint8_t* panel, size_t kquads, int32_t* c) {
  for (int r = 0; r < mr; ++r) {
    const int8_t* ar = a + static_cast<size_t>(r) * lda;
    uint32_t acc[kInt8NR] = {};
    for (size_t kq = 0; kq < kquads; ++kq) {
      const uint8_t* u = panel + kq * 4 * kInt8NR;
      for (size_t j = 0; j < kInt8NR; ++j)
        for (size_t i = 0; i < 4; ++i) acc[j] += static_cast<uint32_t>(ar[4 * kq + i] * u[4 * j + i]);
    }
    for (size_t j = 0; j < kInt8NR; ++j) c[r * kInt8NR + j] = static_cast<int32_t>(acc[j]);
  }
}

}  // namespace

const Int8Kernels int8_scalar = {tile, tile_u7};

}  // namespace lowbit
