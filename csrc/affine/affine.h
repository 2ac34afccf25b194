// Affine (uniform) quantization: range finding, codes, dequantization. SPEC 1-3.
//
// Kernels work on one contiguous run of float32 values with one parameter set,
// or on a row-major (rows, cols) block where column c has its own parameters
// ("cols" kernels, for per-channel along the last axis). The driver in
// affine.cpp turns every granularity into calls of these and spreads them over
// threads. Codes are written as bytes: the low byte of the clamped int32, which
// is the right bit pattern for int8 (qmin < 0) and for uint8 (qmin >= 0).
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/dispatch.h"

namespace lowbit {

enum class AffineScheme { absmax = 0, minmax = 1 };

struct AffineParams {
  AffineScheme scheme = AffineScheme::absmax;
  int32_t qmin = -128, qmax = 127;
  int32_t absmax_qmax = 127;  // qmax of the signed grid, the absmax divisor
};

struct AffineKernels {
  // lo/hi of x[0..n); false if any value is NaN or Inf (lo/hi then undefined).
  bool (*range)(const float* x, size_t n, float* lo, float* hi);
  // lo[c] = min(lo[c], x[r, c]), hi likewise, over r < rows (accumulates).
  bool (*range_cols)(const float* x, size_t rows, size_t cols, float* lo, float* hi);
  // out[i] = clamp(round_half_even(x[i] * inv) + zp, qmin, qmax), as a byte.
  void (*quantize)(const float* x, size_t n, float inv, int32_t zp, int32_t qmin, int32_t qmax,
                   uint8_t* out);
  void (*quantize_cols)(const float* x, size_t rows, size_t cols, const float* inv,
                        const int32_t* zp, int32_t qmin, int32_t qmax, uint8_t* out);
  // Fused per-group quantization of groups [g0, g1) of a rows x len layout with groups
  // of `group` values (the last of a row may be shorter): range, parameters, codes in
  // one pass per group. clip_lo/hi (per group, or null) replace the data range.
  // Returns false if a group holds NaN or Inf.
  bool (*quantize_groups)(const float* x, size_t len, size_t group, size_t g0, size_t g1,
                          const AffineParams& p, const float* clip_lo, const float* clip_hi,
                          uint8_t* codes, float* scale, int32_t* zp);
  // out[i] = scale * float(q[i] - zp); q is int8 if is_signed else uint8.
  void (*dequantize)(const uint8_t* q, bool is_signed, size_t n, float scale, int32_t zp, float* out);
  void (*dequantize_cols)(const uint8_t* q, bool is_signed, size_t rows, size_t cols,
                          const float* scale, const int32_t* zp, float* out);
};

// Variants: one file each (affine_<isa>.cpp), one word each here (core/dispatch.h).
LOWBIT_KERNEL_FAMILY(affine, AffineKernels, scalar, avx2);

// ---- driver (affine.cpp) -------------------------------------------------
//
// Layout of the input, flattened C-contiguous, and how it splits into groups:
//   groups:   rows x len, groups of `group` consecutive values along each row
//             (the last group of a row may be shorter); n_groups = rows * ceil(len/group).
//             Per-tensor is groups(1, n, n); per-channel on axis 0 of (C, inner) is
//             groups(C, inner, inner).
//   cols:     rows x cols, one group per column (per-channel on the last axis).
//   channels: outer x C x inner with outer > 1 and inner > 1, one group per c.
struct AffineLayout {
  enum Kind { groups, cols, channels } kind = groups;
  size_t a = 0, b = 0, c = 0;  // groups: rows, len, group; cols: rows, cols; channels: outer, C, inner
  size_t numel() const { return kind == cols ? a * b : (kind == groups ? a * b : a * b * c); }
  size_t n_groups() const;
};

// Quantize x into codes[numel] and per-group scale/zero_point. clip_lo/clip_hi,
// when not null, hold one clip range per group and replace the data range.
// Throws NonFiniteError if x holds NaN or Inf.
void affine_quantize(const float* x, const AffineLayout& layout, const AffineParams& p,
                     const float* clip_lo, const float* clip_hi, uint8_t* codes, float* scale,
                     int32_t* zero_point);

void affine_dequantize(const uint8_t* codes, bool is_signed, const AffineLayout& layout,
                       const float* scale, const int32_t* zero_point, float* out);

// Per-group range only (for calibration and observers); throws NonFiniteError.
void affine_range(const float* x, const AffineLayout& layout, float* lo, float* hi);

}  // namespace lowbit
