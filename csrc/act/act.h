// Per-token (per-row) activation quantization for BitLinear and int8 linear
// layers: SPEC 5.
//
// For each row r of a row-major (M, K) float32 matrix x:
//   amax = max_k |x[r, k]|                          (exact; order-independent)
//   s[r] = float32(qmax) / max(amax, 1e-5f)         (one IEEE float32 division;
//                                                    qmax = 2^(bits-1) - 1, 127 for 8 bits)
//   q[r, k] = clamp(round_half_even(x[r, k] * s[r]), -2^(bits-1), qmax)
//                                                   (one float32 multiply, no FMA)
// and x_hat = q / s. `s` is the SPEC 5 scaling factor (the inverse of a step size).
// The NumPy twin is python/lowbit/reference/act.py; both are bit-identical.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/dispatch.h"

namespace lowbit {

struct ActKernels {
  // *amax = max |x[i]| over i < n (0 for n == 0); false if any value is NaN or Inf.
  bool (*absmax)(const float* x, size_t n, float* amax);
  // q[i] = clamp(round_half_even(x[i] * s), qmin, qmax), for finite x with |x * s| < 2^20.
  void (*quantize)(const float* x, size_t n, float s, int32_t qmin, int32_t qmax, int8_t* q);
};

// Variants: one file each (act_<isa>.cpp), one word each here (core/dispatch.h).
LOWBIT_KERNEL_FAMILY(act, ActKernels, scalar, avx2, avx512);

// ---- driver (act.cpp) ----------------------------------------------------
//
// x: (M, K) row-major float32, finite. q: (M, K) int8 out, rows ldq bytes apart
// (ldq >= K; 0 means K; bytes past K in a row are not touched). s_out: (M,) float32 out.
// Threads over rows. Throws NonFiniteError (nothing meaningful written) if x holds
// NaN or Inf. bits in 2..8.
void quantize_rows(const float* x, size_t M, size_t K, int bits, int8_t* q, float* s_out, size_t ldq = 0);

// The 8-bit case (SPEC 5 exactly: s = 127 / max(amax, 1e-5)); what the int8 and
// ternary matmul kernels call before their integer GEMMs.
inline void quantize_rows_s8(const float* x, size_t M, size_t K, int8_t* q, float* s_out, size_t ldq = 0) {
  quantize_rows(x, M, K, 8, q, s_out, ldq);
}

}  // namespace lowbit
