// Affine kernels, portable scalar variant.
#include "affine/affine.h"
#include "affine/affine_ops.h"

namespace lowbit {
namespace {

bool range(const float* x, size_t n, float* lo, float* hi) {
  float mn = INFINITY, mx = -INFINITY;
  bool ok = range_scalar(x, n, mn, mx);
  *lo = mn;
  *hi = mx;
  return ok;
}

bool range_cols(const float* x, size_t rows, size_t cols, float* lo, float* hi) {
  bool ok = true;
  for (size_t r = 0; r < rows; ++r) {
    const float* row = x + r * cols;
    for (size_t c = 0; c < cols; ++c) {
      float v = row[c];
      ok &= finite_f32(v);
      lo[c] = v < lo[c] ? v : lo[c];
      hi[c] = v > hi[c] ? v : hi[c];
    }
  }
  return ok;
}

void quantize(const float* x, size_t n, float inv, int32_t zp, int32_t qmin, int32_t qmax,
              uint8_t* out) {
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(quantize_one(x[i], inv, zp, qmin, qmax));
}

void quantize_cols(const float* x, size_t rows, size_t cols, const float* inv, const int32_t* zp,
                   int32_t qmin, int32_t qmax, uint8_t* out) {
  for (size_t r = 0; r < rows; ++r)
    for (size_t c = 0; c < cols; ++c)
      out[r * cols + c] = static_cast<uint8_t>(quantize_one(x[r * cols + c], inv[c], zp[c], qmin, qmax));
}

bool quantize_groups(const float* x, size_t len, size_t group, size_t g0, size_t g1, const AffineParams& p,
                     const float* clip_lo, const float* clip_hi, uint8_t* codes, float* scale, int32_t* zp) {
  return quantize_groups_batched(range, quantize, x, len, group, g0, g1, p.scheme == AffineScheme::minmax, p.qmin,
                                 p.qmax, p.absmax_qmax, clip_lo, clip_hi, codes, scale, zp);
}

void dequantize(const uint8_t* q, bool is_signed, size_t n, float scale, int32_t zp, float* out) {
  for (size_t i = 0; i < n; ++i) out[i] = dequantize_one(load_code(q, i, is_signed), scale, zp);
}

void dequantize_cols(const uint8_t* q, bool is_signed, size_t rows, size_t cols, const float* scale,
                     const int32_t* zp, float* out) {
  for (size_t r = 0; r < rows; ++r)
    for (size_t c = 0; c < cols; ++c)
      out[r * cols + c] = dequantize_one(load_code(q, r * cols + c, is_signed), scale[c], zp[c]);
}

}  // namespace

const AffineKernels affine_scalar = {range, range_cols, quantize, quantize_cols, quantize_groups, dequantize,
                                         dequantize_cols};

}  // namespace lowbit
