// Packed ternary (1.58-bit) and binary matmul: the BitNet inference kernel. SPEC 5, 7.
//
// Weights live in the kernel's own packed layout ("tl" = tile layout), one row
// per output channel n, rows `ldw` bytes apart, K padded to a whole number of
// blocks of KB = 32 * (8 / bits) values:
//   bits = 2 (ternary): u = q + 1 in {0, 1, 2}; block b is 32 bytes; byte j holds
//                       u(k = 128 b + 32 i + j) at bits 2i..2i+1, i < 4.
//   bits = 1 (binary):  u = (q + 1) / 2 in {0, 1}; block b is 32 bytes; byte j holds
//                       u(k = 256 b + 32 i + j) at bit i, i < 8.
// Padding values have u = 0. One 32-byte load gives 4 (8) vectors of 32 codes
// by a shift and a mask, each lined up with 32 consecutive activations.
//
// Activations are int8 rows `ldq` bytes apart, zero-padded to nblocks * KB.
// With S = sum_k u[n,k] * q[m,k] (vpmaddubsw: u unsigned, q signed; pair sums
// stay within [-512, 508], so no saturation for any int8 q, -128 included):
//   ternary: acc = S - sum_k q[m,k];   binary: acc = 2 S - sum_k q[m,k].
// 16-bit partial sums are widened to int32 before they can overflow, so acc is
// exact for K <= kTernaryMaxK.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/dispatch.h"

namespace lowbit {

constexpr size_t kTernaryMaxK = size_t(1) << 22;  // partial sums of 4 u q stay below 2^31

inline size_t tl_block(int bits) { return bits == 2 ? 128 : 256; }  // K values per 32-byte block

// Large-M path: weights are decoded to bytes once per tile of kTlRows rows by
// kTlChunk values of K, then reused by every activation row.
constexpr size_t kTlRows = 16;
constexpr size_t kTlChunk = 2048;  // 64 vpmaddubsw steps: the most int16 sums can take
inline size_t tl_scratch_bytes(size_t M) { return kTlRows * kTlChunk + M * kTlRows * 32; }

struct TernaryKernels {
  // sum of q[0..n) (the correction term of the unsigned-code product).
  int32_t (*sum_s8)(const int8_t* q, size_t n);
  // acc[m * ldc + (n - n0)] = exact int32 sum_k q[m,k] * t[n,k] for m < M, n0 <= n < n1.
  // qsum[m] = sum_k q[m,k]; w points at row 0 of the packed weights; scratch
  // holds tl_scratch_bytes(M) bytes, 32-byte aligned (one per thread).
  void (*gemm)(int bits, const int8_t* q, size_t M, size_t ldq, const int32_t* qsum, const uint8_t* w,
               size_t ldw, size_t nblocks, size_t n0, size_t n1, int32_t* acc, size_t ldc, void* scratch);
  // y[n] = float(acc[n]) * (gw[n * gw_stride] / sx) (+ bias[n] if bias), n < N.
  void (*epilogue)(const int32_t* acc, size_t N, float sx, const float* gw, size_t gw_stride,
                   const float* bias, float* y);
};

// Variants: one file each (ternary_<isa>.cpp), one word each here (core/dispatch.h).
LOWBIT_KERNEL_FAMILY(ternary, TernaryKernels, scalar, avx2);

// ---- driver (ternary.cpp) --------------------------------------------------
//
// codes: int8 (N, K) in {-1, 0, 1} (bits 2) or {-1, 1} (bits 1), row-major.
// packed: uint8 (N, ldw) with ldw = tl_row_bytes(K, bits).
inline size_t tl_row_bytes(size_t K, int bits) { return (K + tl_block(bits) - 1) / tl_block(bits) * 32; }

// Returns false if a code is outside the alphabet (packed then undefined).
bool tl_pack(const int8_t* codes, size_t N, size_t K, int bits, uint8_t* packed);
void tl_unpack(const uint8_t* packed, size_t N, size_t K, int bits, int8_t* codes);

// acc (M, N) int32 = qx (M, K) int8 times t (N, K)^T, exact.
void tl_matmul_s32(const int8_t* qx, size_t M, size_t K, const uint8_t* packed, size_t N, int bits,
                   int32_t* acc);

// y (M, N) float32: x (M, K) float32 quantized per token (SPEC 5, by the act
// family's kernels, csrc/act/act.h), then
// y = float(acc) * (gw[n] / s_x[m]) (+ bias[n]); gw has N values (gw_stride 1)
// or one (gw_stride 0); bias may be null. Throws NonFiniteError for NaN/Inf in x.
void tl_matmul_f32(const float* x, size_t M, size_t K, const uint8_t* packed, size_t N, int bits,
                   const float* gw, size_t gw_stride, const float* bias, float* y);

}  // namespace lowbit
