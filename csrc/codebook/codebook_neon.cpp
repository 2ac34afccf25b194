// Codebook kernels, aarch64 Advanced SIMD variant: brute-force nearest code for
// k <= 16 (the first strict minimum, i.e. the lowest index on ties), vector Lloyd
// bins for k <= 17; the division x / scale is IEEE (fdiv), as the scalar one.
#include <arm_neon.h>

#include "codebook/codebook.h"
#include "codebook/codebook_ops.h"

namespace lowbit {
namespace {

inline uint32x4_t nearest4(float32x4_t v, const float32x4_t* c, size_t k) {
  float32x4_t best = vabdq_f32(v, c[0]);  // |v - c|: the rounded difference's absolute value
  uint32x4_t idx = vdupq_n_u32(0);
  for (size_t j = 1; j < k; ++j) {
    float32x4_t d = vabdq_f32(v, c[j]);
    uint32x4_t lt = vcltq_f32(d, best);
    best = vbslq_f32(lt, d, best);
    idx = vbslq_u32(lt, vdupq_n_u32(static_cast<uint32_t>(j)), idx);
  }
  return idx;
}

void quantize(const float* x, size_t n, float scale, const float* cb, size_t k, uint8_t* out) {
  size_t i = 0;
  if (k <= 16) {
    float32x4_t c[16];
    for (size_t j = 0; j < k; ++j) c[j] = vdupq_n_f32(cb[j]);
    const float32x4_t vs = vdupq_n_f32(scale);
    for (; i + 8 <= n; i += 8) {
      uint32x4_t a = nearest4(vdivq_f32(vld1q_f32(x + i), vs), c, k);
      uint32x4_t b = nearest4(vdivq_f32(vld1q_f32(x + i + 4), vs), c, k);
      vst1_u8(out + i, vmovn_u16(vcombine_u16(vmovn_u32(a), vmovn_u32(b))));
    }
  }
  for (; i < n; ++i) out[i] = nearest_code(x[i] / scale, cb, k);
}

void dequantize(const uint8_t* q, size_t n, float scale, const float* cb, float* out) {
  const float32x4_t vs = vdupq_n_f32(scale);
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    float g[4] = {cb[q[i]], cb[q[i + 1]], cb[q[i + 2]], cb[q[i + 3]]};
    vst1q_f32(out + i, vmulq_f32(vs, vld1q_f32(g)));
  }
  for (; i < n; ++i) out[i] = scale * cb[q[i]];
}

void assign(const float* x, size_t n, const float* mid, size_t k, uint64_t* cnt, double* sum) {
  LloydBanks bank(k);
  size_t i = 0;
  if (k <= 17) {
    float32x4_t m[16];
    for (size_t t = 0; t + 1 < k; ++t) m[t] = vdupq_n_f32(mid[t]);
    uint32_t idx[4];
    for (; i + 4 <= n; i += 4) {
      float32x4_t v = vld1q_f32(x + i);
      uint32x4_t j = vdupq_n_u32(0);
      for (size_t t = 0; t + 1 < k; ++t) j = vsubq_u32(j, vcltq_f32(m[t], v));  // -1 where mid < v
      vst1q_u32(idx, j);
      for (int l = 0; l < 4; ++l) bank.add(i + l, idx[l], x[i + l]);
    }
  }
  for (; i < n; ++i) bank.add(i, lloyd_bin(x[i], mid, k), x[i]);
  bank.flush(cnt, sum);
}

}  // namespace

const CodebookKernels codebook_neon = {quantize, dequantize, assign};

}  // namespace lowbit
