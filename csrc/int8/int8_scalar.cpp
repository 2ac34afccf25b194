// int8 GEMM micro-kernel, portable scalar variant (wrapping int32 via uint32).
#include "int8/int8.h"
#include "int8/int8_ops.h"

namespace lowbit {
namespace {

constexpr size_t kNR = 16;

void tile(const void* a_, size_t lda, int mr, const uint8_t* panel_, size_t kpairs, int32_t* c) {
  const int16_t* a = static_cast<const int16_t*>(a_);
  const int8_t* panel = reinterpret_cast<const int8_t*>(panel_);
  for (int r = 0; r < mr; ++r) {
    const int16_t* ar = a + static_cast<size_t>(r) * lda;
    uint32_t acc[kNR] = {};
    for (size_t kp = 0; kp < kpairs; ++kp) {
      const int8_t* b = panel + kp * 2 * kNR;
      int32_t a0 = ar[2 * kp], a1 = ar[2 * kp + 1];
      for (size_t j = 0; j < kNR; ++j)
        acc[j] += static_cast<uint32_t>(a0 * b[2 * j] + a1 * b[2 * j + 1]);
    }
    for (size_t j = 0; j < kNR; ++j) c[r * kNR + j] = static_cast<int32_t>(acc[j]);
  }
}

void tile_u7(const void* a_, size_t lda, int mr, const uint8_t* panel, size_t kquads, int32_t* c) {
  const int8_t* a = static_cast<const int8_t*>(a_);
  for (int r = 0; r < mr; ++r) {
    const int8_t* ar = a + static_cast<size_t>(r) * lda;
    uint32_t acc[kNR] = {};
    for (size_t kq = 0; kq < kquads; ++kq) {
      const uint8_t* u = panel + kq * 4 * kNR;
      for (size_t j = 0; j < kNR; ++j)
        for (size_t i = 0; i < 4; ++i) acc[j] += static_cast<uint32_t>(ar[4 * kq + i] * u[4 * j + i]);
    }
    for (size_t j = 0; j < kNR; ++j) c[r * kNR + j] = static_cast<int32_t>(acc[j]);
  }
}

}  // namespace

const Int8Kernels int8_scalar = {
    {{"i16x2.n16", 16, 6, 2, 0, -128, 127, Int8Operand::kI16}, tile},
    {{"u7x4.n16", 16, 6, 4, 64, -64, 63, Int8Operand::kS8}, tile_u7},
    int8_epilogue<kNR>,
    int8_rowsum,
};

}  // namespace lowbit
