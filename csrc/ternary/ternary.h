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

// What the last K chunk of a decoded panel writes when the variant has dec_out (below):
// for activation row m and output channel n, in wrapping int32,
//   a = U - qsum[m] (ternary) or 2 U - qsum[m] (binary),
// then acc[m * ldc + n] = a if acc is not null, and
//   y[m * ldc + n] = float(a) * (gw[n * gw_stride] / sx[m]) (+ bias[n] if bias)
// in float32 (SPEC 7, the epilogue's arithmetic) if y is not null.
struct TernaryOut {
  int bits;
  const int32_t* qsum;  // (M,)
  int32_t* acc;         // (M, ldc) or null
  float* y;             // (M, ldc) or null
  size_t ldc;
  const float* sx;  // (M,), with y
  const float* gw;  // N values (gw_stride 1) or one (gw_stride 0), with y
  size_t gw_stride;
  const float* bias;  // (N,) or null
  const float* rowf;  // with y and gw_stride 0: rowf[m] = gw[0] / sx[m] (one division per row per call)
};

// ---- the kernel table: fixed-shape tiles and what they need ----------------
//
// An ISA variant provides tiles, not a strategy: the driver (ternary.cpp) owns the
// choice between the register tiles (small M) and the decoded panels (large M), the
// split of M into tiles, K chunking, scratch sizing and threads. Every tile computes,
// exactly in int32 (|U| <= 2 * 128 * K < 2^31 for K <= kTernaryMaxK),
//   U[m, n] = sum_k u[n, k] * q[m, k]      (u the unsigned code of the layout above)
// over the blocks it is given; the driver turns U into acc = U - qsum (ternary) or
// 2 U - qsum (binary) and adds K chunks with wrapping int32 adds. Activation pointers
// are 32 * (8 / bits)-value aligned in K (a block), rows ldx bytes apart, padded with
// zeros to whole blocks; any pointer alignment.
struct TernaryKernels {
  // -- description --
  int reg_max_rows;      // most activation rows of one reg_rows call (1..64)
  size_t reg_k_blocks;   // K chunks for reg_rows best hold a multiple of this many blocks
  int dec_max_rows;      // most activation rows of one dec_tile call (>= 1)
  size_t dec_chunk;      // K values of one decoded chunk (the most a dec_tile may take in
                         // one call; a multiple of 256) and the byte stride of decoded rows
  size_t dec_acc_bytes;  // bytes of one output's dec_tile accumulator (all-zero bytes = 0)
  size_t dec_min_rows;   // from this M on, decoding to memory beats the register tiles

  // -- tiles --
  // Each tile runs along a strip of weight rows the driver hands it (so that one call
  // does enough work to hide its cost), row after row in order.
  //
  // sum of q[0..n) (the correction term of the unsigned-code product).
  int32_t (*sum_s8)(const int8_t* q, size_t n);
  // Register tiles (weights decoded in registers, small M):
  // U[j] for the activation row x and the weight rows w + j * ldw, j < nrows (a multiple of
  // 4: a 1 x 4 tile), over nblocks blocks.
  void (*reg_1x4)(int bits, const int8_t* x, const uint8_t* w, size_t ldw, size_t nrows, size_t nblocks,
                  int32_t* U);
  // U[i * ldu + j] for the activation rows x + i * ldx, i < mr (1 <= mr <= reg_max_rows), and
  // the weight rows w + j * ldw, j < nrows, over nblocks blocks (an MR x 1 tile). Rows past
  // the strip may be prefetched (prefetching past the end of the weights is fine).
  void (*reg_rows)(int bits, const int8_t* x, size_t ldx, int mr, const uint8_t* w, size_t ldw, size_t nrows,
                   size_t nblocks, int32_t* U, size_t ldu);
  // Decoded panels (large M): decode writes the codes u of weight rows w + r * ldw,
  // r < rows <= dec_rows, blocks [0, nblocks) (nblocks * 32 * 8 / bits <= dec_chunk), into
  // wb (64-byte aligned, dec_rows * dec_chunk bytes) in the variant's own layout, which
  // only its dec_tile reads (scalar, AVX2, NEON: bytes in activation order, row r at
  // wb + r * dec_chunk; AVX-512 VNNI: groups of 4 inputs across the rows).
  void (*decode)(int bits, const uint8_t* w, size_t ldw, size_t rows, size_t nblocks, uint8_t* wb);
  // Adds U (activation rows x + i * ldx, i < mr <= dec_max_rows; the decoded rows j < nr
  // of the panel at wb; len K values, a multiple of 128, <= dec_chunk) into the
  // accumulator acc + (i * ldacc + j) * dec_acc_bytes (acc dec_acc_bytes-aligned; ldacc
  // >= dec_rows: a tile may add 0 to the accumulators of panel rows nr .. dec_rows - 1).
  void (*dec_tile)(const int8_t* x, size_t ldx, int mr, const uint8_t* wb, size_t nr, size_t len, void* acc,
                   size_t ldacc);
  // U[r] = the value of accumulator r (acc + r * dec_acc_bytes), r < n.
  void (*dec_reduce)(const void* acc, size_t n, int32_t* U);
  // y[n] = float(acc[n]) * (gw[n * gw_stride] / sx) (+ bias[n] if bias), n < N.
  void (*epilogue)(const int32_t* acc, size_t N, float sx, const float* gw, size_t gw_stride,
                   const float* bias, float* y);

  // -- description, continued (last, so that tables which leave it out get the default) --
  size_t dec_rows = 16;  // weight rows per decoded panel (>= 1): what
                         // one decode call takes and one dec_tile call may get
  // Optional (null: the driver reduces, finishes and runs the epilogue itself): dec_tile
  // for the last chunk of K of a panel, fused with the rest of the work. U is
  // (acc_in ? the accumulator (i * ldacc + j) of acc_in, as dec_tile leaves it : 0) plus
  // this chunk's sums; for i < mr, j < nr it writes output row m0 + i, channel n0 + j of
  // `out` (TernaryOut). The int32 sums never leave the registers: no accumulator memory,
  // no reduce, no staging block, no separate epilogue pass over the M x N results.
  // A variant with dec_out decodes nblocks blocks of a panel into dec_rows * nblocks *
  // (32 * 8 / bits) bytes (not dec_rows * dec_chunk), so that the driver can keep several
  // decoded panels back to back when K fits one chunk.
  void (*dec_out)(const int8_t* x, size_t ldx, int mr, const uint8_t* wb, size_t nr, size_t len,
                  const void* acc_in, size_t ldacc, const TernaryOut& out, size_t m0, size_t n0) = nullptr;
  // Optional: short rows reach the decoded panels sooner (their decode is cheap and the
  // register tiles' horizontal sums are a larger share): with dec_k_per_row > 0 they are
  // used from M >= min(dec_min_rows, dec_min_rows_base + K / dec_k_per_row), K padded.
  size_t dec_min_rows_base = 0;
  size_t dec_k_per_row = 0;
};

// Variants: one file each (ternary_<isa>.cpp), one word each here (core/dispatch.h).
LOWBIT_KERNEL_FAMILY(ternary, TernaryKernels, scalar, avx2, avx512vnni, neon, dotprod, i8mm);

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
