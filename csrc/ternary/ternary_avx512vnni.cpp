// AVX-512 VNNI variant of the ternary family: the tiles of ternary.h (the packed layout
// and each tile's contract are there; the driver, ternary.cpp, chooses and tiles).
//
// vpdpbusd multiplies unsigned bytes by signed bytes and adds each group of four
// products into an int32 lane without saturating, so codes u (0..2, or 0..1) meet int8
// activations (-128 included) straight into exact int32: no 16-bit partial sums, no
// widening, no K limit of its own below ternary.h's 2^22.
//
// Register tiles (small M) decode in registers. A 32-byte block is broadcast to both
// halves of a zmm; one AND with a mask that differs per half gives 64 codes lined up
// with 64 consecutive activations, each half scaled by a power of two:
//   ternary: mask [0x03 | 0x0C] -> [u(128b + j) | 4 u(128b + 32 + j)], j < 32, against
//            x[128b .. 128b + 64); mask [0x30 | 0xC0] -> [16 u | 64 u] of the next 64.
//   binary:  masks [0x01 | 0x02] and [0x04 | 0x08] give the first 128 codes of the
//            block scaled [1 | 2] and [4 | 8]; the block shifted right by 4 gives the next
//            128 under the same masks and scales.
// The scaled codes (<= 128) are still bytes. At the end each lane is divided by its scale
// with an arithmetic shift, exact because every product added to it is a multiple of the
// scale. The M = 1 tile (1 x 8) keeps two accumulators per output (A: lanes [1 | 4],
// binary [1 | 2]; B: [16 | 64], binary [4 | 8]), so 64 codes cost one AND and no shift.
// The MR x NW tiles (2..12 rows x 2 or 4 weight rows) keep one per output: the block
// shifted right by 2 BITS s under the first mask gives every step the same scales [1 | 4]
// ([1 | 2]), and each activation vector is loaded once for the NW weight rows. No lane
// overflows for K <= 2^22: a lane takes at most 4 products of |64 u q| <= 2^14 per block,
// over at most 2^15 blocks (ternary; binary 2^14 blocks), and -2^31 is representable.
//
// Decoded panels (large M) use the int8 avx512vnni kernel's layout and tile (below): 32
// weight rows decoded once per chunk of K into groups of 4 inputs across the rows, then
// 12 x 32 tiles of broadcast activations, one vpdpbusd per 16 outputs x 4 inputs.
#include <immintrin.h>

// GCC 12's AVX-512 intrinsics (broadcast, insert/extract, vpsravd, the reductions, in
// their unmasked forms) start from _mm512_undefined_*() and then warn
// -W(maybe-)uninitialized where they are inlined: a false positive of the headers.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <algorithm>
#include <array>
#include <cstring>
#include <utility>

#include "ternary/ternary.h"
#include "ternary/ternary_ops.h"

namespace lowbit {
namespace {

inline __m512i load64(const void* p) { return _mm512_loadu_si512(p); }
// Keeps an accumulator in its register: without it GCC 12 also stores every accumulator of
// the unrolled tiles to the stack on each iteration.
inline void pin(__m512i& v) { __asm__("" : "+v"(v)); }
// A 32-byte block in both halves of a zmm (vbroadcasti64x4 from memory).
inline __m512i bcast_block(const uint8_t* p) {
  return _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
// Bytes lo in the low 256 bits, hi in the high 256 bits.
inline __m512i halves8(int lo, int hi) {
  return _mm512_inserti64x4(_mm512_set1_epi8(static_cast<char>(lo)), _mm256_set1_epi8(static_cast<char>(hi)), 1);
}
inline __m512i halves32(int lo, int hi) {
  return _mm512_inserti64x4(_mm512_set1_epi32(lo), _mm256_set1_epi32(hi), 1);
}

// The masks, the per-lane scales (as shift counts) and the groups of 128 codes per block.
template <int BITS>
struct Planes {
  static constexpr int G = BITS == 2 ? 1 : 2;  // groups of 128 codes per 32-byte block
  static constexpr size_t KB = 32 * 8 / BITS;  // codes per block
  __m512i m1, m2, s1, s2;
  Planes()
      : m1(BITS == 2 ? halves8(0x03, 0x0C) : halves8(0x01, 0x02)),
        m2(BITS == 2 ? halves8(0x30, 0xC0) : halves8(0x04, 0x08)),
        s1(BITS == 2 ? halves32(0, 2) : halves32(0, 1)),
        s2(BITS == 2 ? halves32(4, 6) : halves32(2, 3)) {}
  // U from the two accumulators of one output (exact: see the top of the file).
  int32_t finish(__m512i a, __m512i b) const {
    return _mm512_reduce_add_epi32(_mm512_add_epi32(_mm512_srav_epi32(a, s1), _mm512_srav_epi32(b, s2)));
  }
};

// Lane r of the result = sum of the lanes of v[r], r < 8.
inline __m256i hsum8(const __m256i* v) {
  const __m256i t0 = _mm256_hadd_epi32(v[0], v[1]), t1 = _mm256_hadd_epi32(v[2], v[3]);
  const __m256i t2 = _mm256_hadd_epi32(v[4], v[5]), t3 = _mm256_hadd_epi32(v[6], v[7]);
  const __m256i u0 = _mm256_hadd_epi32(t0, t1), u1 = _mm256_hadd_epi32(t2, t3);
  return _mm256_add_epi32(_mm256_permute2x128_si256(u0, u1, 0x20), _mm256_permute2x128_si256(u0, u1, 0x31));
}

int32_t sum_s8(const int8_t* q, size_t n) {
  const __m512i ones = _mm512_set1_epi8(1);
  __m512i acc = _mm512_setzero_si512();
  size_t k = 0;
  for (; k + 64 <= n; k += 64) acc = _mm512_dpbusd_epi32(acc, ones, load64(q + k));
  int32_t total = _mm512_reduce_add_epi32(acc);
  for (; k < n; ++k) total += q[k];
  return total;
}

// ---- small M: decode in registers ------------------------------------------

constexpr int kReg1Rows = 8;  // weight rows per M = 1 tile (12 spill: 2x the time)

// One activation row against R weight rows: the activations of a group are loaded once
// for the R rows; 2 R independent accumulator chains.
template <int BITS, int R>
inline void tile_1xr(const int8_t* x, const uint8_t* w, size_t ldw, size_t nblocks, int32_t* U) {
  const Planes<BITS> P;
  constexpr int G = Planes<BITS>::G;
  constexpr size_t KB = Planes<BITS>::KB;
  // rows are ldw apart; the next tile's rows are fetched into L2 while this one runs
  // (the stream prefetchers do not cross pages; prefetches past the end never fault)
  const size_t ahead = R * ldw;
  __m512i A[R], B[R];
#pragma GCC unroll 8
  for (int j = 0; j < R; ++j) A[j] = B[j] = _mm512_setzero_si512();
  for (size_t b = 0; b < nblocks; ++b) {
    const size_t wo = 32 * b;
    __m512i v[R];
#pragma GCC unroll 8
    for (int j = 0; j < R; ++j) {
      if ((b & 1) == 0)  // one 64-byte line per two blocks
        _mm_prefetch(reinterpret_cast<const char*>(w + j * ldw + ahead + wo), _MM_HINT_T1);
      v[j] = bcast_block(w + j * ldw + wo);
    }
#pragma GCC unroll 2
    for (int g = 0; g < G; ++g) {
      const int8_t* xg = x + b * KB + 128 * g;
      const __m512i xl = load64(xg), xh = load64(xg + 64);
#pragma GCC unroll 8
      for (int j = 0; j < R; ++j) {
        if (g) v[j] = _mm512_srli_epi16(v[j], 4);
        A[j] = _mm512_dpbusd_epi32(A[j], _mm512_and_si512(v[j], P.m1), xl);
        B[j] = _mm512_dpbusd_epi32(B[j], _mm512_and_si512(v[j], P.m2), xh);
        pin(A[j]);
        pin(B[j]);
      }
    }
  }
#pragma GCC unroll 8
  for (int j = 0; j < R; ++j) U[j] = P.finish(A[j], B[j]);
}

template <int BITS>
void reg_1x4_bits(const int8_t* x, const uint8_t* w, size_t ldw, size_t nrows, size_t nblocks, int32_t* U) {
  size_t n = 0;
  for (; n + kReg1Rows <= nrows; n += kReg1Rows) tile_1xr<BITS, kReg1Rows>(x, w + n * ldw, ldw, nblocks, U + n);
  for (; n + 4 <= nrows; n += 4) tile_1xr<BITS, 4>(x, w + n * ldw, ldw, nblocks, U + n);
}

void reg_1x4(int bits, const int8_t* x, const uint8_t* w, size_t ldw, size_t nrows, size_t nblocks, int32_t* U) {
  if (bits == 2) reg_1x4_bits<2>(x, w, ldw, nrows, nblocks, U);
  else reg_1x4_bits<1>(x, w, ldw, nrows, nblocks, U);
}

constexpr int kRegMaxRows = 12;  // 24 accumulators + 6 temporaries + a mask of 32 zmm

// MR activation rows against NW weight rows at a time: each activation vector is loaded
// once for the NW weight rows. One accumulator per output: the block in both halves,
// shifted right by 2 BITS s for s < 4 / BITS, under one mask ([0x03 | 0x0C], binary
// [0x01 | 0x02]) gives codes scaled [1 | 4] ([1 | 2]) against activations 64 s .. 64 s + 63
// of the block, so every step has the same lane scales. The next NW weight rows are
// fetched into L2 meanwhile.
template <int BITS, int MR, int NW>
inline void reg_rows_tile(const int8_t* x, size_t ldx, const uint8_t* w, size_t ldw, size_t nblocks, int32_t* U,
                          size_t ldu) {
  constexpr int S = 4 / BITS;                 // steps of 64 codes per block
  constexpr size_t KB = 32 * 8 / BITS;        // codes per block
  const __m512i mask = BITS == 2 ? halves8(0x03, 0x0C) : halves8(0x01, 0x02);
  const __m512i scale = halves32(0, BITS);    // per-lane scale as a shift count
  const size_t ahead = NW * ldw;
  __m512i C[NW][MR];
#pragma GCC unroll 4
  for (int j = 0; j < NW; ++j)
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) C[j][i] = _mm512_setzero_si512();
  for (size_t b = 0; b < nblocks; ++b) {
    __m512i v[NW];
#pragma GCC unroll 4
    for (int j = 0; j < NW; ++j) {
      if ((b & 1) == 0) _mm_prefetch(reinterpret_cast<const char*>(w + j * ldw + ahead + 32 * b), _MM_HINT_T1);
      v[j] = bcast_block(w + j * ldw + 32 * b);
    }
#pragma GCC unroll 4
    for (int s = 0; s < S; ++s) {
      __m512i d[NW];
#pragma GCC unroll 4
      for (int j = 0; j < NW; ++j) d[j] = _mm512_and_si512(s ? _mm512_srli_epi16(v[j], 2 * BITS * s) : v[j], mask);
      const int8_t* xs = x + b * KB + 64 * s;
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i) {
        __m512i xv = load64(xs + i * ldx);
        if constexpr (NW > 1) pin(xv);  // one load for the NW rows, not a memory operand each
#pragma GCC unroll 4
        for (int j = 0; j < NW; ++j) {
          C[j][i] = _mm512_dpbusd_epi32(C[j][i], d[j], xv);
          pin(C[j][i]);
        }
      }
    }
  }
  // U: each lane divided by its scale (exact), the lanes summed, 8 outputs per tree
#pragma GCC unroll 4
  for (int j = 0; j < NW; ++j) {
    int i = 0;
    for (; i + 8 <= MR; i += 8) {
      __m256i f[8];
#pragma GCC unroll 8
      for (int r = 0; r < 8; ++r)
        f[r] = _mm256_add_epi32(_mm512_castsi512_si256(C[j][i + r]),
                                _mm256_srai_epi32(_mm512_extracti64x4_epi64(C[j][i + r], 1), BITS));
      alignas(32) int32_t sums[8];
      _mm256_store_si256(reinterpret_cast<__m256i*>(sums), hsum8(f));
#pragma GCC unroll 8
      for (int r = 0; r < 8; ++r) U[(i + r) * ldu + j] = sums[r];
    }
    for (; i < MR; ++i) U[i * ldu + j] = _mm512_reduce_add_epi32(_mm512_srav_epi32(C[j][i], scale));
  }
}

// Weight rows per tile: at least 8 accumulator chains in flight (vpdpbusd's latency).
template <int BITS, int MR>
void reg_rows_mr(const int8_t* x, size_t ldx, const uint8_t* w, size_t ldw, size_t nrows, size_t nblocks,
                 int32_t* U, size_t ldu) {
  constexpr int NW = MR <= 5 ? 4 : 2;
  size_t n = 0;
  for (; n + NW <= nrows; n += NW) reg_rows_tile<BITS, MR, NW>(x, ldx, w + n * ldw, ldw, nblocks, U + n, ldu);
  for (; n < nrows; ++n) reg_rows_tile<BITS, MR, 1>(x, ldx, w + n * ldw, ldw, nblocks, U + n, ldu);
}

template <int BITS>
void reg_rows_bits(const int8_t* x, size_t ldx, int mr, const uint8_t* w, size_t ldw, size_t nrows, size_t nblocks,
                   int32_t* U, size_t ldu) {
  switch (mr) {
    case 1: return reg_rows_mr<BITS, 1>(x, ldx, w, ldw, nrows, nblocks, U, ldu);
    case 2: return reg_rows_mr<BITS, 2>(x, ldx, w, ldw, nrows, nblocks, U, ldu);
    case 3: return reg_rows_mr<BITS, 3>(x, ldx, w, ldw, nrows, nblocks, U, ldu);
    case 4: return reg_rows_mr<BITS, 4>(x, ldx, w, ldw, nrows, nblocks, U, ldu);
    case 5: return reg_rows_mr<BITS, 5>(x, ldx, w, ldw, nrows, nblocks, U, ldu);
    case 6: return reg_rows_mr<BITS, 6>(x, ldx, w, ldw, nrows, nblocks, U, ldu);
    case 7: return reg_rows_mr<BITS, 7>(x, ldx, w, ldw, nrows, nblocks, U, ldu);
    case 8: return reg_rows_mr<BITS, 8>(x, ldx, w, ldw, nrows, nblocks, U, ldu);
    case 9: return reg_rows_mr<BITS, 9>(x, ldx, w, ldw, nrows, nblocks, U, ldu);
    case 10: return reg_rows_mr<BITS, 10>(x, ldx, w, ldw, nrows, nblocks, U, ldu);
    case 11: return reg_rows_mr<BITS, 11>(x, ldx, w, ldw, nrows, nblocks, U, ldu);
    default: return reg_rows_mr<BITS, 12>(x, ldx, w, ldw, nrows, nblocks, U, ldu);
  }
}

void reg_rows(int bits, const int8_t* x, size_t ldx, int mr, const uint8_t* w, size_t ldw, size_t nrows,
              size_t nblocks, int32_t* U, size_t ldu) {
  if (bits == 2) reg_rows_bits<2>(x, ldx, mr, w, ldw, nrows, nblocks, U, ldu);
  else reg_rows_bits<1>(x, ldx, mr, w, ldw, nrows, nblocks, U, ldu);
}

// ---- large M: decode once per panel, broadcast int8 tiles -------------------
//
// The decoded panel is this variant's own layout (ternary.h lets decode and dec_tile agree
// on it), the int8 avx512vnni kernel's: for each group g of 4 consecutive inputs, NV * 64
// bytes, the codes u(row r, k = 4g .. 4g + 3) at bytes 4r .. 4r + 3, r < 16 NV (rows past
// the panel's are zero). A tile row takes NV vpdpbusd per group: the group's vectors
// against the row's 4 activations broadcast to every lane (a memory operand), one int32
// lane per weight row, so no horizontal sums are left at the end.
//
// Decoding: the packed byte j of a block holds plane i of input 32 i + j, so dword d of a
// block (bytes 4d .. 4d + 3) holds, in its plane i, the codes of the 4 inputs 32 i + 4d ..
// + 3: one lane of group 8 i + d (ternary: 32 groups per block; binary 64). A dword
// transpose of 16 rows' blocks gives one vector per d, and a shift and a mask per plane
// the group vectors.
constexpr int kDecNV = 2;                  // group vectors per panel: 32 weight rows
constexpr size_t kDecRows = 16 * kDecNV;
// K values per decoded chunk: a 128 KiB panel. K up to 4096 takes the fused path (dec_out,
// one chunk; 2048 before: 0.96-1.0x the time at M = 20..608, K = 4096)
constexpr size_t kDecChunk = 4096;
constexpr int kDecMR = 12;                 // 24 accumulators, 2 weight vectors, a broadcast

inline __m256i load32(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// Rows [0, rows) of w (rows <= 16) as group vectors, vector g at out + g * stride.
template <int BITS>
inline void decode16(const uint8_t* w, size_t ldw, size_t rows, size_t nblocks, uint8_t* out, size_t stride) {
  constexpr int P = 8 / BITS;
  constexpr size_t GB = 8 * P;  // groups per block
  const __m512i mask = _mm512_set1_epi8((1 << BITS) - 1);
  // qword indices of the last transpose step: 128-bit lanes [a0, b0, a2, b2], [a1, b1, a3, b3]
  const __m512i ia = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13);
  const __m512i ib = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
  const __m256i zero = _mm256_setzero_si256();
  const size_t next_panel = kDecRows * ldw;
  for (size_t b = 0; b < nblocks; ++b) {
    if ((b & 1) == 0)
      for (size_t p = 0; p < rows; ++p) {
        _mm_prefetch(reinterpret_cast<const char*>(w + p * ldw + 32 * b + 128), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(w + p * ldw + 32 * b + next_panel), _MM_HINT_T2);
      }
    // r[p]: row p in the low 256 bits, row p + 8 in the high ones
    __m512i r[8];
    for (size_t p = 0; p < 8; ++p) {
      const __m256i lo = p < rows ? load32(w + p * ldw + 32 * b) : zero;
      const __m256i hi = p + 8 < rows ? load32(w + (p + 8) * ldw + 32 * b) : zero;
      r[p] = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
    }
    // 8 x 8 dword transposes in both halves: z[d] lane q = dword d of row q
    __m512i t[8], u[8], z[8];
    for (int p = 0; p < 8; p += 2) {
      t[p] = _mm512_unpacklo_epi32(r[p], r[p + 1]);
      t[p + 1] = _mm512_unpackhi_epi32(r[p], r[p + 1]);
    }
    for (int p = 0; p < 8; p += 4) {
      u[p] = _mm512_unpacklo_epi64(t[p], t[p + 2]);          // dwords 0, 4 of rows p .. p + 3
      u[p + 1] = _mm512_unpackhi_epi64(t[p], t[p + 2]);      // 1, 5
      u[p + 2] = _mm512_unpacklo_epi64(t[p + 1], t[p + 3]);  // 2, 6
      u[p + 3] = _mm512_unpackhi_epi64(t[p + 1], t[p + 3]);  // 3, 7
    }
    for (int d = 0; d < 4; ++d) {
      z[d] = _mm512_permutex2var_epi64(u[d], ia, u[d + 4]);
      z[d + 4] = _mm512_permutex2var_epi64(u[d], ib, u[d + 4]);
    }
    uint8_t* o = out + b * GB * stride;
    for (int i = 0; i < P; ++i)
      for (int d = 0; d < 8; ++d)
        _mm512_storeu_si512(o + (8 * i + d) * stride,
                            _mm512_and_si512(i ? _mm512_srli_epi32(z[d], BITS * i) : z[d], mask));
  }
}

template <int BITS>
void decode_bits(const uint8_t* w, size_t ldw, size_t rows, size_t nblocks, uint8_t* wb) {
  for (size_t h = 0; h < kDecNV; ++h) {
    const size_t r0 = 16 * h, n = rows > r0 ? std::min<size_t>(16, rows - r0) : 0;
    decode16<BITS>(w + r0 * ldw, ldw, n, nblocks, wb + 64 * h, 64 * kDecNV);
  }
}

void decode(int bits, const uint8_t* w, size_t ldw, size_t rows, size_t nblocks, uint8_t* wb) {
  if (bits == 2) decode_bits<2>(w, ldw, rows, nblocks, wb);
  else decode_bits<1>(w, ldw, rows, nblocks, wb);
}

inline __m512i bcast_quad(const int8_t* p) {
  int32_t quad;
  std::memcpy(&quad, p, sizeof quad);
  return _mm512_set1_epi32(quad);
}

// c[i][h] = the sums of MR activation rows x 16 NV weight rows over ngroups groups.
template <int MR>
inline void tile_dec_sums(const int8_t* x, size_t ldx, const uint8_t* wb, size_t ngroups, __m512i (&c)[MR][kDecNV]) {
  constexpr int NV = kDecNV;
#pragma GCC unroll 32
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int h = 0; h < NV; ++h) c[i][h] = _mm512_setzero_si512();
  size_t g = 0;
  if constexpr (MR <= 2) {
    // few rows: a second set of accumulators for odd groups hides vpdpbusd's latency
    __m512i o[MR][NV];
#pragma GCC unroll 32
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
      for (int h = 0; h < NV; ++h) o[i][h] = _mm512_setzero_si512();
    for (; g + 2 <= ngroups; g += 2) {
      __m512i w0[NV], w1[NV];
#pragma GCC unroll 4
      for (int h = 0; h < NV; ++h) w0[h] = load64(wb + 64 * (NV * g + h)), w1[h] = load64(wb + 64 * (NV * g + NV + h));
#pragma GCC unroll 32
      for (int i = 0; i < MR; ++i) {
        const __m512i a0 = bcast_quad(x + i * ldx + 4 * g), a1 = bcast_quad(x + i * ldx + 4 * g + 4);
#pragma GCC unroll 4
        for (int h = 0; h < NV; ++h) {
          c[i][h] = _mm512_dpbusd_epi32(c[i][h], w0[h], a0);
          o[i][h] = _mm512_dpbusd_epi32(o[i][h], w1[h], a1);
          pin(c[i][h]);
          pin(o[i][h]);
        }
      }
    }
#pragma GCC unroll 32
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
      for (int h = 0; h < NV; ++h) c[i][h] = _mm512_add_epi32(c[i][h], o[i][h]);
  }
  for (; g < ngroups; ++g) {
    __m512i wv[NV];
#pragma GCC unroll 4
    for (int h = 0; h < NV; ++h) wv[h] = load64(wb + 64 * (NV * g + h));
#pragma GCC unroll 32
    for (int i = 0; i < MR; ++i) {
      const __m512i a = bcast_quad(x + i * ldx + 4 * g);
#pragma GCC unroll 4
      for (int h = 0; h < NV; ++h) {
        c[i][h] = _mm512_dpbusd_epi32(c[i][h], wv[h], a);
        pin(c[i][h]);
      }
    }
  }
}

// MR activation rows x 16 NV weight rows over ngroups groups, added into acc[i * ldacc + j]
// (all 16 NV columns: ldacc >= kDecRows, and padded rows add 0).
template <int MR>
void tile_dec(const int8_t* x, size_t ldx, const uint8_t* wb, size_t ngroups, int32_t* acc, size_t ldacc) {
  __m512i c[MR][kDecNV];
  tile_dec_sums<MR>(x, ldx, wb, ngroups, c);
#pragma GCC unroll 32
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int h = 0; h < kDecNV; ++h) {
      int32_t* a = acc + i * ldacc + 16 * h;
      _mm512_storeu_si512(a, _mm512_add_epi32(load64(a), c[i][h]));
    }
}

// The sums of tile_dec into sums[i * 16 NV + j] (stored, not added).
template <int MR>
__attribute__((noinline)) void tile_dec_store(const int8_t* x, size_t ldx, const uint8_t* wb, size_t ngroups,
                                              int32_t* sums) {
  __m512i c[MR][kDecNV];
  tile_dec_sums<MR>(x, ldx, wb, ngroups, c);
#pragma GCC unroll 32
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int h = 0; h < kDecNV; ++h) _mm512_store_si512(sums + (16 * kDecNV) * i + 16 * h, c[i][h]);
}

// tile_dec for the last chunk of K, fused with the rest (TernaryKernels::dec_out): the
// sums (plus acc_in's, if any) become a = U - qsum (binary 2 U - qsum) and are written as
// int32 and/or as y = float(a) * (gw / sx) (+ bias), channels past nr masked off.
template <int MR>
void tile_dec_out(const int8_t* x, size_t ldx, const uint8_t* wb, size_t ngroups, size_t nr, const int32_t* acc_in,
                  size_t ldacc, const TernaryOut& o, size_t m0, size_t n0) {
  constexpr int NV = kDecNV;
  // the sums go through an L1 block (2 stores and 2 loads per 32 outputs of a K-long sum),
  // written by a function of its own: with the epilogue in the same function GCC 12 kept
  // the accumulators in memory inside the main loop (2x the time)
  alignas(64) int32_t sums[MR][16 * NV];
  tile_dec_store<MR>(x, ldx, wb, ngroups, sums[0]);
  __mmask16 mask[NV];
  for (int h = 0; h < NV; ++h) {
    const size_t lo = 16 * static_cast<size_t>(h), n = nr > lo ? std::min<size_t>(16, nr - lo) : 0;
    mask[h] = static_cast<__mmask16>((1u << n) - 1);
  }
  const bool binary = o.bits == 1;
  const int32_t* const qsum = o.qsum + m0;
  const size_t ldc = o.ldc;
  // a = U - qsum (binary 2 U - qsum) of row i, vector h
  auto formula = [&](int i, int h) {
    __m512i u = _mm512_load_si512(sums[i] + 16 * h);
    if (acc_in) u = _mm512_add_epi32(u, load64(acc_in + i * ldacc + 16 * h));
    if (binary) u = _mm512_add_epi32(u, u);
    return _mm512_sub_epi32(u, _mm512_set1_epi32(qsum[i]));
  };
  if (!o.y) {
    int32_t* const out = o.acc + m0 * ldc + n0;
    for (int i = 0; i < MR; ++i)
      for (int h = 0; h < NV; ++h) _mm512_mask_storeu_epi32(out + i * ldc + 16 * h, mask[h], formula(i, h));
    return;
  }
  int32_t* const acc = o.acc ? o.acc + m0 * ldc + n0 : nullptr;
  float* const y = o.y + m0 * ldc + n0;
  const float* const bias = o.bias ? o.bias + n0 : nullptr;
  __m512 bv[NV];
  for (int h = 0; h < NV; ++h) bv[h] = bias ? _mm512_maskz_loadu_ps(mask[h], bias + 16 * h) : _mm512_setzero_ps();
  // y = float(a) * f (+ bias): f = gw / sx, per tensor (the driver's rowf) or per channel
  auto store = [&](int i, int h, __m512i a, __m512 f) {
    if (acc) _mm512_mask_storeu_epi32(acc + i * ldc + 16 * h, mask[h], a);
    __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(a), f);
    if (bias) v = _mm512_add_ps(v, bv[h]);
    _mm512_mask_storeu_ps(y + i * ldc + 16 * h, mask[h], v);
  };
  if (!o.gw_stride) {
    const float* const rowf = o.rowf + m0;
    for (int i = 0; i < MR; ++i) {
      const __m512 f = _mm512_set1_ps(rowf[i]);
      for (int h = 0; h < NV; ++h) store(i, h, formula(i, h), f);
    }
    return;
  }
  __m512 gwv[NV];
  for (int h = 0; h < NV; ++h) gwv[h] = _mm512_maskz_loadu_ps(mask[h], o.gw + n0 + 16 * h);
  const float* const sx = o.sx + m0;
  for (int i = 0; i < MR; ++i) {
    const __m512 s = _mm512_set1_ps(sx[i]);
    for (int h = 0; h < NV; ++h) store(i, h, formula(i, h), _mm512_div_ps(gwv[h], s));
  }
}

template <size_t... I>
constexpr auto dec_tiles(std::index_sequence<I...>) {
  using Fn = void (*)(const int8_t*, size_t, const uint8_t*, size_t, int32_t*, size_t);
  return std::array<Fn, sizeof...(I)>{tile_dec<static_cast<int>(I) + 1>...};
}
constexpr auto kDecTiles = dec_tiles(std::make_index_sequence<kDecMR>());

void dec_tile(const int8_t* x, size_t ldx, int mr, const uint8_t* wb, size_t /*nr*/, size_t len, void* acc,
              size_t ldacc) {
  kDecTiles[static_cast<size_t>(mr - 1)](x, ldx, wb, len / 4, static_cast<int32_t*>(acc), ldacc);
}

template <size_t... I>
constexpr auto dec_out_tiles(std::index_sequence<I...>) {
  using Fn = void (*)(const int8_t*, size_t, const uint8_t*, size_t, size_t, const int32_t*, size_t, const TernaryOut&,
                      size_t, size_t);
  return std::array<Fn, sizeof...(I)>{tile_dec_out<static_cast<int>(I) + 1>...};
}
constexpr auto kDecOutTiles = dec_out_tiles(std::make_index_sequence<kDecMR>());

void dec_out(const int8_t* x, size_t ldx, int mr, const uint8_t* wb, size_t nr, size_t len, const void* acc_in,
             size_t ldacc, const TernaryOut& o, size_t m0, size_t n0) {
  kDecOutTiles[static_cast<size_t>(mr - 1)](x, ldx, wb, len / 4, nr, static_cast<const int32_t*>(acc_in), ldacc, o,
                                            m0, n0);
}

void dec_reduce(const void* acc, size_t n, int32_t* U) { std::memcpy(U, acc, n * sizeof(int32_t)); }

void epilogue(const int32_t* acc, size_t N, float sx, const float* gw, size_t gw_stride, const float* bias,
              float* y) {
  const __m512 vsx = _mm512_set1_ps(sx);
  size_t n = 0;
  const __m512 f1 = _mm512_div_ps(_mm512_set1_ps(gw[0]), vsx);
  for (; n + 16 <= N; n += 16) {
    const __m512 f = gw_stride == 0 ? f1 : _mm512_div_ps(_mm512_loadu_ps(gw + n), vsx);
    __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(load64(acc + n)), f);
    if (bias) v = _mm512_add_ps(v, _mm512_loadu_ps(bias + n));
    _mm512_storeu_ps(y + n, v);
  }
  for (; n < N; ++n) {
    float v = tl_out_one(acc[n], gw[n * gw_stride], sx);
    y[n] = bias ? v + bias[n] : v;
  }
}

}  // namespace

const TernaryKernels ternary_avx512vnni = {
    /*reg_max_rows=*/kRegMaxRows, /*reg_k_blocks=*/1, /*dec_max_rows=*/kDecMR, /*dec_chunk=*/kDecChunk,
    /*dec_acc_bytes=*/sizeof(int32_t),
    // measured on Zen 5 (one thread, bench/ternary_ab.py), the decoded panels with dec_out
    // against the register tiles: they win from M = 5-6 at K = 384 and are level at
    // M = 14-19 at K = 1536 (0.95-1.06x, noisy); at K = 4096 and 11008 the register tiles
    // still win at 19 rows (by 1.1x): decoded from min(20, 2 + K / 80) rows (6 at K = 384,
    // 11 at K = 768, 20 from K = 1440 as before)
    /*dec_min_rows=*/20,
    sum_s8, reg_1x4, reg_rows, decode, dec_tile, dec_reduce, epilogue, /*dec_rows=*/kDecRows, dec_out,
    /*dec_min_rows_base=*/2, /*dec_k_per_row=*/80};

}  // namespace lowbit
