// Extreme quantization kernels, aarch64 Advanced SIMD variant. The float64 block
// sums keep the 16-lane order of extreme.h exactly (8 float64x2 accumulators, lane j
// = element j of every 16 values); no fused multiply-add; comparisons give the
// codes as masks (-1 / 0), so q = mask(<) - mask(>) etc.
#include <arm_neon.h>

#include "extreme/extreme.h"
#include "extreme/extreme_ops.h"

namespace lowbit {
namespace {

// 16 int32 codes in {-1, 0, 1} -> 16 bytes
inline int8x16_t narrow16(int32x4_t a, int32x4_t b, int32x4_t c, int32x4_t d) {
  return vcombine_s8(vmovn_s16(vcombine_s16(vmovn_s32(a), vmovn_s32(b))),
                     vmovn_s16(vcombine_s16(vmovn_s32(c), vmovn_s32(d))));
}

// +1 where x - mu >= 0, else -1 (NaN: -1, as the scalar comparison)
inline int32x4_t sign4(float32x4_t x, float32x4_t mu) {
  uint32x4_t ge = vcgeq_f32(vsubq_f32(x, mu), vdupq_n_f32(0.0f));
  return vsubq_s32(vreinterpretq_s32_u32(vandq_u32(ge, vdupq_n_u32(2))), vdupq_n_s32(1));  // 2 - 1 or 0 - 1
}

// Adds 16 values (4 vectors) to the 8 float64x2 lane accumulators: lane j gets element j.
inline void add16(float64x2_t* acc, const float32x4_t* v) {
  for (int k = 0; k < 4; ++k) {
    acc[2 * k] = vaddq_f64(acc[2 * k], vcvt_f64_f32(vget_low_f32(v[k])));
    acc[2 * k + 1] = vaddq_f64(acc[2 * k + 1], vcvt_high_f64_f32(v[k]));
  }
}

void block_sums(const float* x, size_t n, double* abs_out, double* sum_out, int8_t* sign_out) {
  const float32x4_t zero = vdupq_n_f32(0.0f);
  for (size_t b = 0; b * kSumBlock < n; ++b) {
    const size_t s = b * kSumBlock, len = n - s < kSumBlock ? n - s : kSumBlock;
    const float* xs = x + s;
    float64x2_t al[8], sl[8];
    for (int k = 0; k < 8; ++k) al[k] = sl[k] = vdupq_n_f64(0.0);
    size_t i = 0;
    for (; i + 16 <= len; i += 16) {
      float32x4_t v[4], a[4];
      for (int k = 0; k < 4; ++k) {
        v[k] = vld1q_f32(xs + i + 4 * k);
        a[k] = vabsq_f32(v[k]);
      }
      add16(al, a);
      if (sum_out) add16(sl, v);
      if (sign_out)
        vst1q_s8(sign_out + s + i, narrow16(sign4(v[0], zero), sign4(v[1], zero), sign4(v[2], zero), sign4(v[3], zero)));
    }
    double al_[kSumLanes], sl_[kSumLanes];
    for (int k = 0; k < 8; ++k) {
      vst1q_f64(al_ + 2 * k, al[k]);
      vst1q_f64(sl_ + 2 * k, sl[k]);
    }
    lanes_add(xs + i, len - i, 0, al_, sum_out ? sl_ : nullptr);  // i is a multiple of 16
    abs_out[b] = lane_tree(al_);
    if (sum_out) sum_out[b] = lane_tree(sl_);
    if (sign_out)
      for (size_t j = s + i; j < s + len; ++j) sign_out[j] = binary_sign_one(x[j], 0.0f);
  }
}

inline int32x4_t tern4(float32x4_t v, float32x4_t hi, float32x4_t lo) {
  return vsubq_s32(vreinterpretq_s32_u32(vcltq_f32(v, lo)), vreinterpretq_s32_u32(vcgtq_f32(v, hi)));
}

void ternary_round(const float* x, size_t n, float inv, int8_t* q) {
  const float32x4_t vinv = vdupq_n_f32(inv), hi = vdupq_n_f32(0.5f), lo = vdupq_n_f32(-0.5f);
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    int32x4_t r[4];
    for (int k = 0; k < 4; ++k) r[k] = tern4(vmulq_f32(vld1q_f32(x + i + 4 * k), vinv), hi, lo);
    vst1q_s8(q + i, narrow16(r[0], r[1], r[2], r[3]));
  }
  for (; i < n; ++i) q[i] = ternary_round_one(x[i], inv);
}

void ternary_threshold(const float* x, size_t n, float a, float t, int8_t* q) {
  const float32x4_t va = vdupq_n_f32(a), hi = vdupq_n_f32(t), lo = vdupq_n_f32(-t);
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    int32x4_t r[4];
    for (int k = 0; k < 4; ++k) r[k] = tern4(vdivq_f32(vld1q_f32(x + i + 4 * k), va), hi, lo);
    vst1q_s8(q + i, narrow16(r[0], r[1], r[2], r[3]));
  }
  for (; i < n; ++i) q[i] = ternary_threshold_one(x[i], a, t);
}

void binary_sign(const float* x, size_t n, float mu, int8_t* q) {
  const float32x4_t vmu = vdupq_n_f32(mu);
  size_t i = 0;
  for (; i + 16 <= n; i += 16)
    vst1q_s8(q + i, narrow16(sign4(vld1q_f32(x + i), vmu), sign4(vld1q_f32(x + i + 4), vmu),
                             sign4(vld1q_f32(x + i + 8), vmu), sign4(vld1q_f32(x + i + 12), vmu)));
  for (; i < n; ++i) q[i] = binary_sign_one(x[i], mu);
}

size_t ternary_twn(const float* x, size_t n, float delta, int8_t* q, double* kept_out) {
  const float32x4_t vd = vdupq_n_f32(delta), zero = vdupq_n_f32(0.0f);
  size_t kept = 0;
  for (size_t b = 0; b * kSumBlock < n; ++b) {
    const size_t s = b * kSumBlock, len = n - s < kSumBlock ? n - s : kSumBlock;
    const float* xs = x + s;
    float64x2_t l[8];
    for (int k = 0; k < 8; ++k) l[k] = vdupq_n_f64(0.0);
    uint32x4_t cnt = vdupq_n_u32(0);
    size_t i = 0;
    for (; i + 16 <= len; i += 16) {
      float32x4_t ka[4];
      int32x4_t r[4];
      for (int k = 0; k < 4; ++k) {
        float32x4_t v = vld1q_f32(xs + i + 4 * k), a = vabsq_f32(v);
        uint32x4_t keep = vcgtq_f32(a, vd);
        ka[k] = vreinterpretq_f32_u32(vandq_u32(keep, vreinterpretq_u32_f32(a)));  // kept |x| or +0.0
        cnt = vsubq_u32(cnt, keep);
        // keep ? (x > 0 ? 1 : -1) : 0
        int32x4_t sgn = vsubq_s32(vreinterpretq_s32_u32(vandq_u32(vcgtq_f32(v, zero), vdupq_n_u32(2))), vdupq_n_s32(1));
        r[k] = vandq_s32(sgn, vreinterpretq_s32_u32(keep));
      }
      add16(l, ka);
      vst1q_s8(q + s + i, narrow16(r[0], r[1], r[2], r[3]));
    }
    double l_[kSumLanes];
    for (int k = 0; k < 8; ++k) vst1q_f64(l_ + 2 * k, l[k]);
    kept += vaddvq_u32(cnt);
    kept += twn_lanes(xs + i, len - i, 0, delta, q + s + i, l_);
    kept_out[b] = lane_tree(l_);
  }
  return kept;
}

struct Ops {
  static void block_sums(const float* x, size_t n, double* a, double* s, int8_t* q) { lowbit::block_sums(x, n, a, s, q); }
  static void ternary_round(const float* x, size_t n, float inv, int8_t* q) { lowbit::ternary_round(x, n, inv, q); }
  static size_t ternary_twn(const float* x, size_t n, float d, int8_t* q, double* k) {
    return lowbit::ternary_twn(x, n, d, q, k);
  }
  static void binary_sign(const float* x, size_t n, float mu, int8_t* q) { lowbit::binary_sign(x, n, mu, q); }
};

bool small_groups(const float* x, size_t count, size_t group, ExtremeMethod m, int8_t* q, float* scale) {
  return small_groups_impl<Ops>(x, count, group, m, q, scale);
}

}  // namespace

const ExtremeKernels extreme_neon = {block_sums, ternary_round, ternary_twn, ternary_threshold, binary_sign,
                                     small_groups};

}  // namespace lowbit
