// Binary and ternary quantization (SPEC 5): BitNet absmean, TWN, threshold,
// sign and BitNet-binary, per tensor / channel / group.
//
// Mean-based scales are float64 sums in one fixed order, so that kernels and
// the NumPy reference (lowbit/reference/extreme.py) agree bit for bit: a group's
// values are cut into blocks of kSumBlock; in a block, lane j of kSumLanes adds
// the values j, j + 16, j + 32, ... in order from 0.0; the block's value is the
// pairwise tree l[j] + l[j + 8], then + 4, + 2, + 1 apart; the group's sum adds
// the block values in order from 0.0. Sums of float32 values cannot overflow in
// float64, so a non-finite sum means the input holds NaN or Inf.
#pragma once
#include <cstddef>
#include <cstdint>

#include "affine/affine.h"  // AffineLayout: the same granularities
#include "core/dispatch.h"

namespace lowbit {

constexpr size_t kSumBlock = 4096;
constexpr size_t kSumLanes = 16;
constexpr float kAbsmeanEps = 1e-5f;   // absmean: g = max(mean|x|, 1e-5)
constexpr double kTwnFactor = 0.7;     // TWN: delta = 0.7 mean|x|

enum class ExtremeMethod { absmean = 0, twn = 1, threshold = 2, sign = 3, bitnet = 4 };

struct ExtremeKernels {
  // Block values (see above) of |x| into abs_out[ceil(n / kSumBlock)], and of x
  // into sum_out when it is not null; blocks start at x[0]. When sign_out is not
  // null it also gets the binary "sign" codes (+1 where x >= 0, else -1): the
  // codes of that method do not depend on the scale, so they take no second pass.
  void (*block_sums)(const float* x, size_t n, double* abs_out, double* sum_out, int8_t* sign_out);
  // Ternary, absmean: q = clamp(round_half_even(x * inv), -1, 1).
  void (*ternary_round)(const float* x, size_t n, float inv, int8_t* q);
  // Ternary, TWN: q = sign(x) where |x| > delta, else 0. kept_out gets the block
  // values of the kept |x| (as block_sums); returns the number kept.
  size_t (*ternary_twn)(const float* x, size_t n, float delta, int8_t* q, double* kept_out);
  // Ternary, threshold: r = x / a (float32 division); q = (r > t) - (r < -t).
  void (*ternary_threshold)(const float* x, size_t n, float a, float t, int8_t* q);
  // Binary: q = +1 where float32(x - mu) >= 0, else -1.
  void (*binary_sign)(const float* x, size_t n, float mu, int8_t* q);
  // `count` groups of `group` <= kSumBlock values back to back: codes and one
  // scale per group, as extreme_quantize defines them (not for threshold).
  // False if a group holds NaN or Inf.
  bool (*small_groups)(const float* x, size_t count, size_t group, ExtremeMethod m, int8_t* q, float* scale);
};

// Variants: one file each (extreme_<isa>.cpp), one word each here (core/dispatch.h).
LOWBIT_KERNEL_FAMILY(extreme, ExtremeKernels, scalar, avx2);

// ---- driver (extreme.cpp) ------------------------------------------------

// x: float32, C-contiguous, split into groups by `layout` (see affine.h).
// codes[numel] get int8 codes; scale[n_groups] the per-group scales:
//   absmean: max(mean|x|, 1e-5)            twn: mean of the kept |x| (0 if none)
//   threshold: max(max|x|, FLT_MIN)        sign, bitnet: mean|x|
// `threshold` is the float32 t of the threshold method. Throws NonFiniteError
// if x holds NaN or Inf.
void extreme_quantize(const float* x, const AffineLayout& layout, ExtremeMethod method, float threshold,
                      int8_t* codes, float* scale);

}  // namespace lowbit
