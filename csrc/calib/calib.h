// Clipping and calibration: |x| histograms, exact percentiles, MSE and KL
// searches for the clip range. SPEC 4; python/lowbit/reference/calibration.py
// is the literal definition every function here matches.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "affine/affine.h"
#include "core/dispatch.h"

namespace lowbit {

constexpr int kKlBins = 2048;

struct CalibKernels {
  // hist[min(floor(double(|x[i]|) * s), 2047)] += 1 for i < n (accumulates).
  void (*abs_histogram)(const float* x, size_t n, double s, uint64_t* hist);
  // For every candidate k < ncand, accumulates into acc[k] the float64 sum of
  // e^2, e = x - scale[k] * round_half_even(clamp(x * inv[k], qlo[k], qhi[k]))
  // in float32 (qlo/qhi = qmin - zp, qmax - zp: the same codes as SPEC 1's clamp).
  void (*mse_objective)(const float* x, size_t n, const float* inv, const float* scale, const float* qlo,
                        const float* qhi, size_t ncand, double* acc);
};

// Variants: one file each (calib_<isa>.cpp), one word each here (core/dispatch.h).
LOWBIT_KERNEL_FAMILY(calib, CalibKernels, scalar, avx2);

// ---- driver (calib.cpp) ----------------------------------------------------
//
// x is laid out as AffineLayout says (see affine.h); lo/hi receive one clip
// range per group (n_groups values each). Symmetric schemes (absmax) get
// (-c, c). Throws NonFiniteError for NaN/Inf input.
enum class CalibMethod { percentile = 0, mse = 1, kl = 2 };

struct CalibParams {
  CalibMethod method = CalibMethod::mse;
  AffineParams affine;      // scheme and integer grid, as for affine_quantize
  int bits = 8;             // KL: L = 2^(bits-1) target bins
  double percentile = 99.9;  // in (0, 100]
  int n_candidates = 100;   // MSE grid size
};

void calib_clip(const float* x, const AffineLayout& layout, const CalibParams& p, float* lo, float* hi);

// KL(P||Q) of every threshold i = L..2048 for one histogram (out has 2049 - L values).
void calib_kl_divergences(const uint64_t* hist, int bits, double* out);

// Histogram of |x| over [0, max|x|] (all zeros when max|x| == 0); hist has 2048 counts.
void calib_kl_histogram(const float* x, size_t n, uint64_t* hist);

// MSE objective of every candidate for one group of n values (out has n_candidates values).
void calib_mse_objectives(const float* x, size_t n, const CalibParams& p, double* out);

}  // namespace lowbit
