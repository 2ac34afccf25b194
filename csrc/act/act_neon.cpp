// Activation quantization kernels, aarch64 Advanced SIMD variant (no FMA: the product
// x * s is rounded on its own; fcvtns rounds it half to even, as SPEC 1/5 want).
#include <arm_neon.h>

#include "act/act.h"
#include "act/act_ops.h"

namespace lowbit {
namespace {

// Max of |x| as integer bit patterns (see abs_bits): exact; NaN/Inf show as >= 0x7f800000.
bool absmax(const float* x, size_t n, float* amax) {
  const uint32x4_t mask = vdupq_n_u32(0x7fffffffu);
  uint32x4_t m0 = vdupq_n_u32(0), m1 = m0, m2 = m0, m3 = m0;
  const uint32_t* u = reinterpret_cast<const uint32_t*>(x);
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    m0 = vmaxq_u32(m0, vandq_u32(vld1q_u32(u + i), mask));
    m1 = vmaxq_u32(m1, vandq_u32(vld1q_u32(u + i + 4), mask));
    m2 = vmaxq_u32(m2, vandq_u32(vld1q_u32(u + i + 8), mask));
    m3 = vmaxq_u32(m3, vandq_u32(vld1q_u32(u + i + 12), mask));
  }
  for (; i + 4 <= n; i += 4) m0 = vmaxq_u32(m0, vandq_u32(vld1q_u32(u + i), mask));
  uint32_t m = vmaxvq_u32(vmaxq_u32(vmaxq_u32(m0, m1), vmaxq_u32(m2, m3)));
  for (; i < n; ++i) {
    uint32_t b = abs_bits(x[i]);
    m = b > m ? b : m;
  }
  *amax = bits_to_float(m);
  return m < kInfBits;
}

inline int32x4_t quant4(const float* x, float32x4_t s, int32x4_t lo, int32x4_t hi) {
  int32x4_t q = vcvtnq_s32_f32(vmulq_f32(vld1q_f32(x), s));  // |x * s| < 2^20: exact integer
  return vminq_s32(vmaxq_s32(q, lo), hi);
}

void quantize(const float* x, size_t n, float s, int32_t qmin, int32_t qmax, int8_t* q) {
  const float32x4_t vs = vdupq_n_f32(s);
  const int32x4_t lo = vdupq_n_s32(qmin), hi = vdupq_n_s32(qmax);
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    int16x8_t ab = vcombine_s16(vmovn_s32(quant4(x + i, vs, lo, hi)), vmovn_s32(quant4(x + i + 4, vs, lo, hi)));
    int16x8_t cd = vcombine_s16(vmovn_s32(quant4(x + i + 8, vs, lo, hi)), vmovn_s32(quant4(x + i + 12, vs, lo, hi)));
    vst1q_s8(q + i, vcombine_s8(vmovn_s16(ab), vmovn_s16(cd)));
  }
  for (; i < n; ++i) q[i] = act_quantize_one(x[i], s, qmin, qmax);
}

}  // namespace

const ActKernels act_neon = {absmax, quantize};

}  // namespace lowbit
