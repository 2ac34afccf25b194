// Calibration kernels, aarch64 Advanced SIMD variant. Every float32 product is rounded
// on its own (no FMA), frintn rounds half to even; the float64 sums of e^2 are split
// over 8 lanes as the AVX2 variant's (the square of a float32 is exact in float64).
#include <arm_neon.h>

#include "calib/calib.h"
#include "calib/calib_ops.h"

namespace lowbit {
namespace {

void abs_histogram(const float* x, size_t n, double s, uint64_t* hist) {
  // Four sub-histograms break the store-to-load chain of repeated bins.
  uint32_t sub[4][kKlBins] = {};
  const float64x2_t vs = vdupq_n_f64(s);
  const uint64x2_t vmax = vdupq_n_u64(kKlBins - 1);
  size_t i = 0;
  while (i < n) {
    size_t end = n - i > (size_t{1} << 30) ? i + (size_t{1} << 30) : n;  // flush before uint32 overflow
    for (; i + 4 <= end; i += 4) {
      float32x4_t v = vabsq_f32(vld1q_f32(x + i));
      // t >= 0: truncation is floor; fcvtzu saturates huge values, then the min caps them
      uint64x2_t lo = vcvtq_u64_f64(vmulq_f64(vcvt_f64_f32(vget_low_f32(v)), vs));
      uint64x2_t hi = vcvtq_u64_f64(vmulq_f64(vcvt_high_f64_f32(v), vs));
      lo = vbslq_u64(vcgtq_u64(lo, vmax), vmax, lo);
      hi = vbslq_u64(vcgtq_u64(hi, vmax), vmax, hi);
      ++sub[0][vgetq_lane_u64(lo, 0)];
      ++sub[1][vgetq_lane_u64(lo, 1)];
      ++sub[2][vgetq_lane_u64(hi, 0)];
      ++sub[3][vgetq_lane_u64(hi, 1)];
    }
    for (; i < end; ++i) ++sub[0][kl_bin(x[i], s)];
    for (int b = 0; b < kKlBins; ++b) {
      hist[b] += static_cast<uint64_t>(sub[0][b]) + sub[1][b] + sub[2][b] + sub[3][b];
      sub[0][b] = sub[1][b] = sub[2][b] = sub[3][b] = 0;
    }
  }
}

inline float32x4_t err4(float32x4_t v, float32x4_t vi, float32x4_t vs, float32x4_t vlo, float32x4_t vhi) {
  float32x4_t t = vrndnq_f32(vminq_f32(vmaxq_f32(vmulq_f32(v, vi), vlo), vhi));
  return vsubq_f32(v, vmulq_f32(vs, t));
}
inline float64x2_t sq_add(float64x2_t acc, float64x2_t d) { return vaddq_f64(acc, vmulq_f64(d, d)); }

void mse_objective(const float* x, size_t n, const float* inv, const float* scale, const float* qlo,
                   const float* qhi, size_t ncand, double* acc) {
  constexpr size_t kBlock = 2048;  // 8 KB of x stays in L1 across all candidates
  for (size_t b0 = 0; b0 < n; b0 += kBlock) {
    size_t len = n - b0 < kBlock ? n - b0 : kBlock;
    const float* xb = x + b0;
    for (size_t k = 0; k < ncand; ++k) {
      const float32x4_t vi = vdupq_n_f32(inv[k]), vs = vdupq_n_f32(scale[k]);
      const float32x4_t vlo = vdupq_n_f32(qlo[k]), vhi = vdupq_n_f32(qhi[k]);
      float64x2_t a0 = vdupq_n_f64(0.0), a1 = a0, a2 = a0, a3 = a0;
      size_t i = 0;
      for (; i + 8 <= len; i += 8) {
        float32x4_t e0 = err4(vld1q_f32(xb + i), vi, vs, vlo, vhi);
        float32x4_t e1 = err4(vld1q_f32(xb + i + 4), vi, vs, vlo, vhi);
        a0 = sq_add(a0, vcvt_f64_f32(vget_low_f32(e0)));
        a1 = sq_add(a1, vcvt_high_f64_f32(e0));
        a2 = sq_add(a2, vcvt_f64_f32(vget_low_f32(e1)));
        a3 = sq_add(a3, vcvt_high_f64_f32(e1));
      }
      double tail = 0.0;
      for (; i < len; ++i) {
        double e = mse_error(xb[i], inv[k], scale[k], qlo[k], qhi[k]);
        tail += e * e;
      }
      acc[k] += vaddvq_f64(vaddq_f64(vaddq_f64(a0, a1), vaddq_f64(a2, a3))) + tail;
    }
  }
}

}  // namespace

const CalibKernels calib_neon = {abs_histogram, mse_objective};

}  // namespace lowbit
