// int8 GEMM and the dynamic int8 linear layer: SPEC 7.
//
//   acc[m, n] = sum_k (A[m, k] - za) * (B[n, k] - zb)        exact (int32, wrapping)
//   y[m, n]   = (sa[m] * sb[n]) * float(acc[m, n]) (+ bias[n])  float32, no FMA
//
// Each variant (int8_<isa>.cpp) provides register tiles and declares, for each of them,
// the weight layout it reads (Int8Layout). The driver (int8.cpp) packs weights for the
// layout of the active variant, prepares the activations the way the layout says, tiles
// and threads the GEMM; the variant's epilogue and row sums (the shared code of
// int8_ops.h compiled with the variant's flags, or the variant's own) apply the
// corrections, scales and bias, vectorized. Accumulation is
// modular int32 everywhere, so the result is exact whenever the true sum fits in int32;
// the Python layer rejects inputs for which it might not (K * max|A - za| * max|B - zb|
// >= 2^31).
//
// Packed weights (every layout): B (N, K) int8 becomes ceil(N / nr) panels of nr output
// channels; K is padded to Kg = K rounded up to a multiple of kgroup. Inside a panel, for
// each group g < Kg / kgroup, nr * kgroup bytes: channel j's stored values of inputs
// g*kgroup .. g*kgroup + kgroup - 1 at bytes j*kgroup .. j*kgroup + kgroup - 1. The stored
// value is the byte B + woffset (int8 if woffset is 0, else uint8); padding (inputs past
// K, channels past N) stores B = 0. A layout accepts codes in [wmin, wmax] only.
//
// Activations, as the layout's operand says:
//  - kI16: A - za widened to int16, (M, Kg) row-major, zero-padded. The tile's dot is
//    dot(A - za, B + woffset); acc = dot - (woffset + zb) * rowsum(A - za).
//  - kS8: int8 rows As (M, Kg), zero-padded: As = A for int8 A (oa = 0), As = A - 128 for
//    uint8 A (oa = 128). The tile's dot is dot(As, B + woffset) and
//    acc = dot - (woffset + zb) * rowsum(As) + (oa - za) * (colsum(B)[n] - K * zb).
// For the dynamic linear layer (int8 activations, za = zb = 0) both reduce to
// acc = dot - woffset * rowsum.
//
// Layouts of today's variants:
//  - "i16x2.n16" (scalar, avx2; any int8 weight): nr 16, kgroup 2, woffset 0, kI16. 16
//    bytes sign-extend (vpmovsxbw) to 8 channels x 2 inputs of int16 for vpmaddwd against
//    a broadcast (A[m, 2g], A[m, 2g + 1]) pair; int32 pair sums cannot saturate.
//  - "u7x4.n16" (scalar, avx2; codes in [-64, 63], e.g. 7-bit weights): nr 16, kgroup 4,
//    woffset 64 (u = B + 64 in [0, 127]), kS8. vpmaddubsw(u, A) pair sums are within
//    127 * 128 * 2 = 32512 (never saturating, -128 included), vpmaddwd with ones adds
//    pairs into int32 lanes: twice the products per instruction of the int16 path.
//  - "u8x4.n32" (avx512vnni; any int8 weight): nr 32, kgroup 4, woffset 128 (u = B + 128
//    in [0, 255]), kS8. One vpdpbusd (u8 x s8, four products summed into an int32 lane,
//    no intermediate saturation) per 16 channels x 4 inputs, the activation quad a
//    broadcast memory operand.
//  - "u8x4.n16" (avxvnni): the same with 256-bit registers, nr 16.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/dispatch.h"

namespace lowbit {

constexpr int kInt8MaxNR = 64;  // most output channels per panel (any layout)
constexpr int kInt8MaxMR = 16;  // most rows per tile (any layout)

enum class Int8Operand : uint8_t { kI16, kS8 };

// What a tile reads: its weight layout and activation operand (see above).
struct Int8Layout {
  const char* name;  // unique per layout: packed weights carry it, calls check it
  int nr;            // output channels per panel, <= kInt8MaxNR
  int mr;            // most rows per tile, <= kInt8MaxMR
  int kgroup;        // consecutive inputs of one channel stored together
  int woffset;       // stored byte = B + woffset
  int wmin, wmax;    // weight codes the layout can hold
  Int8Operand a;     // activation operand
};

// c[r * nr + j] = sum_{k < kgroups * kgroup} a[r * lda + k] * w[j, k] for r < mr
// (1 <= mr <= layout.mr), j < nr, with w the stored bytes of one panel; wrapping int32.
// a is int16 (kI16) or int8 (kS8); lda in elements.
using Int8TileFn = void (*)(const void* a, size_t lda, int mr, const uint8_t* panel, size_t kgroups, int32_t* c);

struct Int8Tile {
  Int8Layout layout;
  Int8TileFn fn;
};

// What the driver does with a finished tile of accumulators c (rows m0 .. m0 + mr - 1,
// channels n0 .. n0 + nc - 1, rows ldc apart): for each element, in wrapping int32,
//   v = c - rowfactor * rowsum[m] (+ colcorr[n] if colcorr is not null)
// then acc[m, n] = v if acc is not null, and y[m, n] = (sa[m] * sb[n or 0]) * float(v)
// (+ bias[n]) in float32 (no FMA) if y is not null. acc and y are (M, N) row-major.
struct Int8Epilogue {
  size_t N = 0;
  int32_t rowfactor = 0;
  const int32_t* rowsum = nullptr;
  const int32_t* colcorr = nullptr;  // (N,) or null
  int32_t* acc = nullptr;            // (M, N) int32 out, or null
  float* y = nullptr;                // (M, N) float32 out, or null
  const float* sa = nullptr;         // (M,)
  const float* sb = nullptr;         // (N,) or (1,)
  bool sb_per_channel = false;
  const float* bias = nullptr;       // (N,) or null
};

// Applies `ep` to one tile (nc <= kInt8MaxNR); each variant compiles the shared one
// (int8_ops.h) with its own ISA flags, so the epilogue runs vectorized.
using Int8EpilogueFn = void (*)(const Int8Epilogue& ep, const int32_t* c, size_t ldc, size_t m0, int mr, size_t n0,
                                size_t nc);

// sum of a[0 .. n - 1] (int8), wrapping int32.
using Int8RowSumFn = int32_t (*)(const int8_t* a, size_t n);

struct Int8Kernels {
  Int8Tile wide;    // any int8 weight (wmin = -128, wmax = 127)
  Int8Tile narrow;  // weights whose codes lie in narrow.layout's range, when a faster tile
                    // needs that (e.g. 7-bit weights on AVX2); else the same as wide
  Int8EpilogueFn epilogue;
  Int8RowSumFn rowsum;  // the row sums of int8 activations (layouts with operand kS8)
};

// Variants: one file each (int8_<isa>.cpp), one word each here (core/dispatch.h).
LOWBIT_KERNEL_FAMILY(int8, Int8Kernels, scalar, avx2, avxvnni, avx512vnni, neon, dotprod, i8mm);

// ---- driver (int8.cpp) ---------------------------------------------------

inline size_t int8_kgroups(const Int8Layout& l, size_t K) { return (K + l.kgroup - 1) / l.kgroup; }
inline size_t int8_panels(const Int8Layout& l, size_t N) { return (N + l.nr - 1) / l.nr; }
inline size_t int8_packed_bytes(const Int8Layout& l, size_t N, size_t K) {
  return int8_panels(l, N) * l.nr * int8_kgroups(l, K) * l.kgroup;
}

// The tile of `kernels` for weights whose codes lie in [lo, hi]: narrow if they fit it.
const Int8Tile& int8_pick(const Int8Kernels& kernels, int lo, int hi);
// The tile of `kernels` whose layout is called `name`, or null; int8_require throws
// std::invalid_argument naming the layouts `kernels` reads instead.
const Int8Tile* int8_find(const Int8Kernels& kernels, const std::string& name);
const Int8Tile& int8_require(const Int8Kernels& kernels, const std::string& name);

// b: (N, K) int8 row-major, every code within layout's [wmin, wmax] (caller checks) ->
// out: int8_packed_bytes(layout, N, K) bytes (packed layout above).
void int8_pack_weights(const Int8Layout& layout, const int8_t* b, size_t N, size_t K, uint8_t* out);

// out: (M, N) int32 = sum_k (a[m,k] - za) * (b[n,k] - zb); a is int8 if a_signed else
// uint8, (M, K) row-major; b (N, K) int8 row-major. Caller guarantees the true results
// fit in int32. Runs on the active variant's narrow tile if b fits it, else its wide one.
void int8_matmul(const uint8_t* a, bool a_signed, size_t M, size_t K, int32_t za, const int8_t* b,
                 size_t N, int32_t zb, int32_t* out);

// The dynamic int8 linear layer on weights packed by int8_pack_weights for the layout
// called `layout`, which must be a layout of the active variant (else
// std::invalid_argument naming both). x (M, K) float32 finite, quantized per row as SPEC 5
// (q, s); sa[m] = 1.0f / s[m]; sb: N values (sb_per_channel) or 1; bias: N values or null.
// Writes y (M, N) float32 = (sa[m] * sb[n]) * float(acc) (+ bias[n]) if y is not null,
// acc (M, N) int32 if acc is not null, and s (M,) if s_out is not null.
// Throws NonFiniteError if x holds NaN or Inf.
void int8_linear(const float* x, size_t M, size_t K, const uint8_t* packed, const std::string& layout, size_t N,
                 const float* sb, bool sb_per_channel, const float* bias, float* y, int32_t* acc, float* s_out);

}  // namespace lowbit
