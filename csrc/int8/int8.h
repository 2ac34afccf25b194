// int8 GEMM and the dynamic int8 linear layer: SPEC 7.
//
//   acc[m, n] = sum_k (A[m, k] - za) * (B[n, k] - zb)        exact (int32, wrapping)
//   y[m, n]   = (sa[m] * sb[n]) * float(acc[m, n]) (+ bias[n])  float32, no FMA
//
// How it stays exact: every int8/uint8 value is widened to int16 (A - za fits:
// |A - za| <= 255) and multiplied with vpmaddwd, whose int32 pair sums can never
// saturate for such inputs (unlike vpmaddubsw's int16 pair sums). Accumulation is
// modular int32, so the result is exact whenever the true sum fits in int32; the
// Python layer rejects inputs for which it might not (K * max|A - za| * max|B - zb|
// >= 2^31). B's zero point is applied afterwards: acc = dot(A - za, B) - zb * rowsum(A - za).
//
// Weight layout ("panels"): B (N, K) int8 is stored as ceil(N / 16) panels of 16
// output channels; K is padded to Kp = K rounded up to even with zeros, and so are
// the missing channels of the last panel. Inside a panel, for each pair of inputs
// kp < Kp / 2, 32 bytes: channel c's B[n0 + c, 2kp] and B[n0 + c, 2kp + 1] at bytes
// 2c and 2c + 1. So 16 bytes sign-extend (vpmovsxbw) to 8 channels x 2 inputs of
// int16, ready for vpmaddwd against a broadcast (A[m, 2kp], A[m, 2kp + 1]) pair.
// A is widened to row-major int16 (M, Kp), A - za, zero-padded.
//
// Fast layout ("u7", for weights whose codes all lie in [-64, 63], e.g. quantized to
// 7 bits): u = B + 64 in [0, 127], ceil(N / 16) panels of 16 channels, K padded to Kq
// = K rounded up to a multiple of 4 (padding u = 64, i.e. B = 0). Inside a panel, for
// each group of four inputs kq < Kq / 4, 64 bytes: channel c's u[n0 + c, 4kq .. 4kq + 3]
// at bytes 4c .. 4c + 3. vpmaddubsw(u, A) then multiplies 32 unsigned u by 32 int8 A
// with int16 pair sums |.| <= 127 * 128 * 2 = 32512 (never saturating, for any int8 A,
// -128 included), vpmaddwd with ones adds pairs into int32 lanes (4 inputs per lane):
// twice the products per instruction of the int16 path. acc = dot(A, u) - 64 * rowsum(A).
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/dispatch.h"

namespace lowbit {

constexpr size_t kInt8NR = 16;  // output channels per panel
constexpr int kInt8MR = 6;      // most rows per micro-tile

inline size_t int8_kpad(size_t K) { return (K + 1) & ~size_t{1}; }
inline size_t int8_panels(size_t N) { return (N + kInt8NR - 1) / kInt8NR; }
inline size_t int8_packed_bytes(size_t N, size_t K) { return int8_panels(N) * kInt8NR * int8_kpad(K); }

constexpr int32_t kInt8U7Offset = 64;  // u = B + 64
inline size_t int8_kquad(size_t K) { return (K + 3) & ~size_t{3}; }
inline size_t int8_u7_packed_bytes(size_t N, size_t K) { return int8_panels(N) * kInt8NR * int8_kquad(K); }

struct Int8Kernels {
  // c[r * 16 + j] = sum_{kp < kpairs} a[r*lda + 2kp] * B[j, 2kp] + a[r*lda + 2kp+1] * B[j, 2kp+1]
  // for r < mr (1 <= mr <= kInt8MR), j < 16, with B one panel; wrapping int32.
  void (*tile)(const int16_t* a, size_t lda, int mr, const int8_t* panel, size_t kpairs, int32_t* c);
  // The same for the u7 layout: c[r * 16 + j] = sum_{k < 4 kquads} a[r*lda + k] * u[j, k], a int8.
  void (*tile_u7)(const int8_t* a, size_t lda, int mr, const uint8_t* panel, size_t kquads, int32_t* c);
};

// Variants: one file each (int8_<isa>.cpp), one word each here (core/dispatch.h).
LOWBIT_KERNEL_FAMILY(int8, Int8Kernels, scalar, avx2);

// ---- driver (int8.cpp) ---------------------------------------------------

// b: (N, K) int8 row-major -> out: int8_packed_bytes(N, K) bytes (panel layout above).
void int8_pack_weights(const int8_t* b, size_t N, size_t K, int8_t* out);

// b: (N, K) int8 -> out: int8_u7_packed_bytes(N, K) bytes (u7 layout above). Returns false,
// out undefined, if a code lies outside [-64, 63].
bool int8_pack_weights_u7(const int8_t* b, size_t N, size_t K, uint8_t* out);

// out: (M, N) int32 = sum_k (a[m,k] - za) * (b[n,k] - zb); a is int8 if a_signed else
// uint8, (M, K) row-major; b (N, K) int8 row-major. Caller guarantees the true results
// fit in int32. Runs on the u7 layout when a is int8, za = zb = 0 and b fits it.
void int8_matmul(const uint8_t* a, bool a_signed, size_t M, size_t K, int32_t za, const int8_t* b,
                 size_t N, int32_t zb, int32_t* out);

// The dynamic int8 linear layer on pre-packed weights: packed by int8_pack_weights (u7
// false) or int8_pack_weights_u7 (u7 true). x (M, K) float32 finite, quantized per row as
// SPEC 5 (q, s); sa[m] = 1.0f / s[m]; sb: N values (sb_per_channel) or 1; bias: N values
// or null. Writes y (M, N) float32 = (sa[m] * sb[n]) * float(acc) (+ bias[n]) if y is not
// null, acc (M, N) int32 if acc is not null, and s (M,) if s_out is not null.
// Throws NonFiniteError if x holds NaN or Inf.
void int8_linear(const float* x, size_t M, size_t K, const void* packed, bool u7, size_t N, const float* sb,
                 bool sb_per_channel, const float* bias, float* y, int32_t* acc, float* s_out);

}  // namespace lowbit
