// Affine kernels, aarch64 Advanced SIMD variant. No fused multiply-add anywhere (every
// product rounded on its own, SPEC 1); fcvtns (vcvtnq_s32_f32) rounds half to even,
// like nearbyint in the default mode.
#include <arm_neon.h>

#include "affine/affine.h"
#include "affine/affine_ops.h"

namespace lowbit {
namespace {

// min, max and a NaN mask (lanes where v != v); +-Inf shows in the final min/max.
struct RangeAcc {
  float32x4_t mn = vdupq_n_f32(INFINITY), mx = vdupq_n_f32(-INFINITY);
  uint32x4_t nan = vdupq_n_u32(0);
  void add(float32x4_t v) {
    mn = vminq_f32(mn, v);
    mx = vmaxq_f32(mx, v);
    nan = vorrq_u32(nan, vmvnq_u32(vceqq_f32(v, v)));
  }
  void merge(const RangeAcc& o) {
    mn = vminq_f32(mn, o.mn);
    mx = vmaxq_f32(mx, o.mx);
    nan = vorrq_u32(nan, o.nan);
  }
  bool no_nan() const { return vmaxvq_u32(nan) == 0; }
};

bool range(const float* x, size_t n, float* lo, float* hi) {
  RangeAcc a0, a1, a2, a3;
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    a0.add(vld1q_f32(x + i));
    a1.add(vld1q_f32(x + i + 4));
    a2.add(vld1q_f32(x + i + 8));
    a3.add(vld1q_f32(x + i + 12));
  }
  for (; i + 4 <= n; i += 4) a0.add(vld1q_f32(x + i));
  a0.merge(a1);
  a2.merge(a3);
  a0.merge(a2);
  // a NaN lane may have poisoned min/max: then ok is false and lo/hi are undefined anyway
  float mn = vminvq_f32(a0.mn), mx = vmaxvq_f32(a0.mx);
  bool ok = a0.no_nan() && mn != -INFINITY && mx != INFINITY;
  ok &= range_scalar(x + i, n - i, mn, mx);
  *lo = mn;
  *hi = mx;
  return ok;
}

bool range_cols(const float* x, size_t rows, size_t cols, float* lo, float* hi) {
  bool ok = true;
  size_t c = 0;
  for (; c + 4 <= cols; c += 4) {
    RangeAcc a;
    a.mn = vld1q_f32(lo + c);
    a.mx = vld1q_f32(hi + c);
    for (size_t r = 0; r < rows; ++r) a.add(vld1q_f32(x + r * cols + c));
    vst1q_f32(lo + c, a.mn);
    vst1q_f32(hi + c, a.mx);
    ok &= a.no_nan() && vminvq_f32(a.mn) != -INFINITY && vmaxvq_f32(a.mx) != INFINITY;
  }
  for (; c < cols; ++c) {
    for (size_t r = 0; r < rows; ++r) {
      float v = x[r * cols + c];
      ok &= finite_f32(v);
      lo[c] = v < lo[c] ? v : lo[c];
      hi[c] = v > hi[c] ? v : hi[c];
    }
  }
  return ok;
}

// Codes of 4 floats (see quantize_one): product, clamp in float, round half to even, + zp.
inline int32x4_t quant4(float32x4_t v, float32x4_t inv, float32x4_t lo, float32x4_t hi, int32x4_t zp) {
  v = vminq_f32(vmaxq_f32(vmulq_f32(v, inv), lo), hi);
  return vaddq_s32(vcvtnq_s32_f32(v), zp);
}

// 16 codes in [qmin, qmax] (|.| <= 255) -> their low bytes
inline uint8x16_t narrow16(int32x4_t a, int32x4_t b, int32x4_t c, int32x4_t d) {
  int16x8_t ab = vcombine_s16(vmovn_s32(a), vmovn_s32(b)), cd = vcombine_s16(vmovn_s32(c), vmovn_s32(d));
  return vreinterpretq_u8_s8(vcombine_s8(vmovn_s16(ab), vmovn_s16(cd)));
}

void quantize(const float* x, size_t n, float inv, int32_t zp, int32_t qmin, int32_t qmax, uint8_t* out) {
  const float32x4_t vinv = vdupq_n_f32(inv), lo = vdupq_n_f32(static_cast<float>(qmin - zp)),
                    hi = vdupq_n_f32(static_cast<float>(qmax - zp));
  const int32x4_t vzp = vdupq_n_s32(zp);
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    int32x4_t a = quant4(vld1q_f32(x + i), vinv, lo, hi, vzp);
    int32x4_t b = quant4(vld1q_f32(x + i + 4), vinv, lo, hi, vzp);
    int32x4_t c = quant4(vld1q_f32(x + i + 8), vinv, lo, hi, vzp);
    int32x4_t d = quant4(vld1q_f32(x + i + 12), vinv, lo, hi, vzp);
    vst1q_u8(out + i, narrow16(a, b, c, d));
  }
  for (; i < n; ++i) out[i] = static_cast<uint8_t>(quantize_one(x[i], inv, zp, qmin, qmax));
}

void quantize_cols(const float* x, size_t rows, size_t cols, const float* inv, const int32_t* zp, int32_t qmin,
                   int32_t qmax, uint8_t* out) {
  const float32x4_t fqmin = vdupq_n_f32(static_cast<float>(qmin)), fqmax = vdupq_n_f32(static_cast<float>(qmax));
  for (size_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    uint8_t* o = out + r * cols;
    size_t c = 0;
    for (; c + 16 <= cols; c += 16) {
      int32x4_t q[4];
      for (int k = 0; k < 4; ++k) {
        int32x4_t z = vld1q_s32(zp + c + 4 * k);
        float32x4_t fz = vcvtq_f32_s32(z);  // exact: |zp| <= 255
        q[k] = quant4(vld1q_f32(xr + c + 4 * k), vld1q_f32(inv + c + 4 * k), vsubq_f32(fqmin, fz),
                      vsubq_f32(fqmax, fz), z);
      }
      vst1q_u8(o + c, narrow16(q[0], q[1], q[2], q[3]));
    }
    for (; c < cols; ++c) o[c] = static_cast<uint8_t>(quantize_one(xr[c], inv[c], zp[c], qmin, qmax));
  }
}

bool quantize_groups(const float* x, size_t len, size_t group, size_t g0, size_t g1, const AffineParams& p,
                     const float* clip_lo, const float* clip_hi, uint8_t* codes, float* scale, int32_t* zp) {
  return quantize_groups_batched(range, quantize, x, len, group, g0, g1, p.scheme == AffineScheme::minmax, p.qmin,
                                 p.qmax, p.absmax_qmax, clip_lo, clip_hi, codes, scale, zp);
}

// 8 codes -> two int32x4 (sign- or zero-extended)
inline void load8_codes(const uint8_t* q, bool is_signed, int32x4_t& lo, int32x4_t& hi) {
  uint8x8_t b = vld1_u8(q);
  int16x8_t w = is_signed ? vmovl_s8(vreinterpret_s8_u8(b)) : vreinterpretq_s16_u16(vmovl_u8(b));
  lo = vmovl_s16(vget_low_s16(w));
  hi = vmovl_high_s16(w);
}

void dequantize(const uint8_t* q, bool is_signed, size_t n, float scale, int32_t zp, float* out) {
  const float32x4_t vs = vdupq_n_f32(scale);
  const int32x4_t vzp = vdupq_n_s32(zp);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    int32x4_t a, b;
    load8_codes(q + i, is_signed, a, b);
    vst1q_f32(out + i, vmulq_f32(vs, vcvtq_f32_s32(vsubq_s32(a, vzp))));
    vst1q_f32(out + i + 4, vmulq_f32(vs, vcvtq_f32_s32(vsubq_s32(b, vzp))));
  }
  for (; i < n; ++i) out[i] = dequantize_one(load_code(q, i, is_signed), scale, zp);
}

void dequantize_cols(const uint8_t* q, bool is_signed, size_t rows, size_t cols, const float* scale,
                     const int32_t* zp, float* out) {
  for (size_t r = 0; r < rows; ++r) {
    const uint8_t* qr = q + r * cols;
    float* o = out + r * cols;
    size_t c = 0;
    for (; c + 8 <= cols; c += 8) {
      int32x4_t a, b;
      load8_codes(qr + c, is_signed, a, b);
      vst1q_f32(o + c, vmulq_f32(vld1q_f32(scale + c), vcvtq_f32_s32(vsubq_s32(a, vld1q_s32(zp + c)))));
      vst1q_f32(o + c + 4, vmulq_f32(vld1q_f32(scale + c + 4), vcvtq_f32_s32(vsubq_s32(b, vld1q_s32(zp + c + 4)))));
    }
    for (; c < cols; ++c) o[c] = dequantize_one(load_code(qr, c, is_signed), scale[c], zp[c]);
  }
}

}  // namespace

const AffineKernels affine_neon = {range, range_cols, quantize, quantize_cols, quantize_groups, dequantize,
                                   dequantize_cols};

}  // namespace lowbit
