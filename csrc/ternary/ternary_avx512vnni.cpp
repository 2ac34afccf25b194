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
// So 64 codes cost one AND (no shift), and the scaled codes (<= 128) are still bytes. Each
// output keeps two accumulators, A (lanes scaled [1 | 4], binary [1 | 2]) and B ([16 |
// 64], binary [4 | 8]); at the end each lane is divided by its scale with an arithmetic
// shift, exact because every product added to it is a multiple of the scale. No lane
// overflows for K <= 2^22: a lane takes one vpdpbusd of four products per block, at most
// 4 * 128 * 128 = 2^16 in magnitude (64 u <= 128), over at most 2^15 blocks (ternary;
// binary 2^14 blocks at 4 * 8 * 128 per block), and -2^31 is representable.
//
// Decoded panels (large M): decode writes plain codes u (a per-half variable shift and a
// mask give 64 codes in activation order per store), and an MR x NR tile of dot products
// runs vpdpbusd on 64 decoded codes against 64 activations per instruction: 6 activation
// rows x 4 decoded rows = 24 zmm accumulators (16 int32 lanes per output), 4 code
// registers, one activation register: 10 loads per 24 vpdpbusd (1536 multiply-adds).
#include <immintrin.h>

// GCC 12's AVX-512 intrinsics (broadcast, insert/extract, vpsravd, the reductions, in
// their unmasked forms) start from _mm512_undefined_*() and then warn
// -W(maybe-)uninitialized where they are inlined: a false positive of the headers.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
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
inline __m512i halves16(int lo, int hi) {
  return _mm512_inserti64x4(_mm512_set1_epi16(static_cast<short>(lo)), _mm256_set1_epi16(static_cast<short>(hi)), 1);
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

// One activation row against four weight rows: the activations of a group are loaded
// once for the four rows; eight independent accumulator chains.
template <int BITS>
void reg_1x4_bits(const int8_t* x, const uint8_t* w, size_t ldw, size_t nrows, size_t nblocks, int32_t* U) {
  const Planes<BITS> P;
  constexpr int G = Planes<BITS>::G;
  constexpr size_t KB = Planes<BITS>::KB;
  // rows are ldw apart; the next tile's rows are fetched into L2 while this one runs
  // (the stream prefetchers do not cross pages; prefetches past the end never fault)
  const size_t ahead = 4 * ldw;
  for (size_t n = 0; n + 4 <= nrows; n += 4) {
    const uint8_t* w0 = w + n * ldw;
    const uint8_t *w1 = w0 + ldw, *w2 = w1 + ldw, *w3 = w2 + ldw;
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    for (size_t b = 0; b < nblocks; ++b) {
      const size_t wo = 32 * b;
      if ((b & 1) == 0) {  // one 64-byte line per two blocks
        _mm_prefetch(reinterpret_cast<const char*>(w0 + ahead + wo), _MM_HINT_T1);
        _mm_prefetch(reinterpret_cast<const char*>(w1 + ahead + wo), _MM_HINT_T1);
        _mm_prefetch(reinterpret_cast<const char*>(w2 + ahead + wo), _MM_HINT_T1);
        _mm_prefetch(reinterpret_cast<const char*>(w3 + ahead + wo), _MM_HINT_T1);
      }
      __m512i v0 = bcast_block(w0 + wo), v1 = bcast_block(w1 + wo), v2 = bcast_block(w2 + wo),
              v3 = bcast_block(w3 + wo);
#pragma GCC unroll 2
      for (int g = 0; g < G; ++g) {
        if (g) {
          v0 = _mm512_srli_epi16(v0, 4), v1 = _mm512_srli_epi16(v1, 4);
          v2 = _mm512_srli_epi16(v2, 4), v3 = _mm512_srli_epi16(v3, 4);
        }
        const int8_t* xg = x + b * KB + 128 * g;
        const __m512i xl = load64(xg), xh = load64(xg + 64);
        a0 = _mm512_dpbusd_epi32(a0, _mm512_and_si512(v0, P.m1), xl);
        b0 = _mm512_dpbusd_epi32(b0, _mm512_and_si512(v0, P.m2), xh);
        a1 = _mm512_dpbusd_epi32(a1, _mm512_and_si512(v1, P.m1), xl);
        b1 = _mm512_dpbusd_epi32(b1, _mm512_and_si512(v1, P.m2), xh);
        a2 = _mm512_dpbusd_epi32(a2, _mm512_and_si512(v2, P.m1), xl);
        b2 = _mm512_dpbusd_epi32(b2, _mm512_and_si512(v2, P.m2), xh);
        a3 = _mm512_dpbusd_epi32(a3, _mm512_and_si512(v3, P.m1), xl);
        b3 = _mm512_dpbusd_epi32(b3, _mm512_and_si512(v3, P.m2), xh);
      }
    }
    U[n] = P.finish(a0, b0);
    U[n + 1] = P.finish(a1, b1);
    U[n + 2] = P.finish(a2, b2);
    U[n + 3] = P.finish(a3, b3);
  }
}

void reg_1x4(int bits, const int8_t* x, const uint8_t* w, size_t ldw, size_t nrows, size_t nblocks, int32_t* U) {
  if (bits == 2) reg_1x4_bits<2>(x, w, ldw, nrows, nblocks, U);
  else reg_1x4_bits<1>(x, w, ldw, nrows, nblocks, U);
}

constexpr int kRegMaxRows = 12;          // 24 accumulators + 3 temporaries + 2 masks of 32 zmm
constexpr size_t kRegPrefetchRows = 2;  // weight rows fetched ahead of the MR x 1 tile

// MR activation rows against one weight row at a time: a block is decoded once for the
// MR rows, whose activations are memory operands of vpdpbusd.
template <int BITS, int MR>
void reg_rows_mr(const int8_t* x, size_t ldx, const uint8_t* w, size_t ldw, size_t nrows, size_t nblocks,
                 int32_t* U, size_t ldu) {
  const Planes<BITS> P;
  constexpr int G = Planes<BITS>::G;
  constexpr size_t KB = Planes<BITS>::KB;
  const size_t ahead = kRegPrefetchRows * ldw;
  for (size_t n = 0; n < nrows; ++n) {
    const uint8_t* wr = w + n * ldw;
    __m512i A[MR], B[MR];
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) A[i] = B[i] = _mm512_setzero_si512();
    for (size_t b = 0; b < nblocks; ++b) {
      if ((b & 1) == 0) _mm_prefetch(reinterpret_cast<const char*>(wr + ahead + 32 * b), _MM_HINT_T1);
      __m512i v = bcast_block(wr + 32 * b);
#pragma GCC unroll 2
      for (int g = 0; g < G; ++g) {
        if (g) v = _mm512_srli_epi16(v, 4);
        const __m512i lo = _mm512_and_si512(v, P.m1), hi = _mm512_and_si512(v, P.m2);
        const int8_t* xg = x + b * KB + 128 * g;
#pragma GCC unroll 16
        for (int i = 0; i < MR; ++i) {
          A[i] = _mm512_dpbusd_epi32(A[i], lo, load64(xg + i * ldx));
          B[i] = _mm512_dpbusd_epi32(B[i], hi, load64(xg + i * ldx + 64));
          pin(A[i]);
          pin(B[i]);
        }
      }
    }
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) U[i * ldu + n] = P.finish(A[i], B[i]);
  }
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

// ---- large M: decode once per panel, int8 dot-product tiles ------------------

constexpr size_t kDecChunk = 2048;  // 16 decoded rows = 32 KiB: in L1 with 6 activation rows
constexpr int kDecMR = 6, kDecNR = 4;

// Codes u in activation order: the block in both halves, a per-half word shift and a
// mask give 64 consecutive codes per store.
template <int BITS>
void decode_bits(const uint8_t* w, size_t ldw, size_t rows, size_t nblocks, uint8_t* wb) {
  constexpr int S = 4 / BITS;  // 64-code stores per block (2 ternary, 4 binary)
  const __m512i mask = _mm512_set1_epi8((1 << BITS) - 1);
  __m512i sh[S];
  for (int s = 0; s < S; ++s) sh[s] = halves16(2 * s * BITS, (2 * s + 1) * BITS);
  for (size_t r = 0; r < rows; ++r) {
    uint8_t* out = wb + r * kDecChunk;
    for (size_t b = 0; b < nblocks; ++b) {
      const __m512i v = bcast_block(w + r * ldw + 32 * b);
      for (int s = 0; s < S; ++s)
        _mm512_storeu_si512(out + b * 32 * 8 / BITS + 64 * s, _mm512_and_si512(_mm512_srlv_epi16(v, sh[s]), mask));
    }
  }
}

void decode(int bits, const uint8_t* w, size_t ldw, size_t rows, size_t nblocks, uint8_t* wb) {
  if (bits == 2) decode_bits<2>(w, ldw, rows, nblocks, wb);
  else decode_bits<1>(w, ldw, rows, nblocks, wb);
}

// MR activation rows x NR decoded rows; one zmm of int32 lanes per output, added into the
// accumulators at the end.
template <int MR, int NR>
inline void tile_dec(const int8_t* x, size_t ldx, const uint8_t* wb, size_t len, __m512i* acc, size_t ldacc) {
  __m512i c[MR][NR];
#pragma GCC unroll 32
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 32
    for (int j = 0; j < NR; ++j) c[i][j] = _mm512_setzero_si512();
  for (size_t k = 0; k < len; k += 64) {
    __m512i u[NR];
#pragma GCC unroll 32
    for (int j = 0; j < NR; ++j) u[j] = load64(wb + j * kDecChunk + k);
#pragma GCC unroll 32
    for (int i = 0; i < MR; ++i) {
      const __m512i xv = load64(x + i * ldx + k);
#pragma GCC unroll 32
      for (int j = 0; j < NR; ++j) {
        c[i][j] = _mm512_dpbusd_epi32(c[i][j], u[j], xv);
        pin(c[i][j]);
      }
    }
  }
#pragma GCC unroll 32
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 32
    for (int j = 0; j < NR; ++j) acc[i * ldacc + j] = _mm512_add_epi32(acc[i * ldacc + j], c[i][j]);
}

template <int MR>
void dec_tile_mr(const int8_t* x, size_t ldx, const uint8_t* wb, size_t nr, size_t len, __m512i* acc, size_t ldacc) {
  size_t r = 0;
  for (; r + kDecNR <= nr; r += kDecNR) tile_dec<MR, kDecNR>(x, ldx, wb + r * kDecChunk, len, acc + r, ldacc);
  switch (nr - r) {
    case 3: return tile_dec<MR, 3>(x, ldx, wb + r * kDecChunk, len, acc + r, ldacc);
    case 2: return tile_dec<MR, 2>(x, ldx, wb + r * kDecChunk, len, acc + r, ldacc);
    case 1: return tile_dec<MR, 1>(x, ldx, wb + r * kDecChunk, len, acc + r, ldacc);
    default: return;
  }
}

void dec_tile(const int8_t* x, size_t ldx, int mr, const uint8_t* wb, size_t nr, size_t len, void* acc_,
              size_t ldacc) {
  __m512i* acc = static_cast<__m512i*>(acc_);
  switch (mr) {
    case 1: return dec_tile_mr<1>(x, ldx, wb, nr, len, acc, ldacc);
    case 2: return dec_tile_mr<2>(x, ldx, wb, nr, len, acc, ldacc);
    case 3: return dec_tile_mr<3>(x, ldx, wb, nr, len, acc, ldacc);
    case 4: return dec_tile_mr<4>(x, ldx, wb, nr, len, acc, ldacc);
    case 5: return dec_tile_mr<5>(x, ldx, wb, nr, len, acc, ldacc);
    default: return dec_tile_mr<6>(x, ldx, wb, nr, len, acc, ldacc);
  }
}

// Lane r of the result = sum of the lanes of v[r], r < 8 (each zmm folded to 256 bits).
inline __m256i hsum8_fold(const __m512i* v) {
  __m256i f[8];
  for (int r = 0; r < 8; ++r) f[r] = _mm256_add_epi32(_mm512_castsi512_si256(v[r]), _mm512_extracti64x4_epi64(v[r], 1));
  const __m256i t0 = _mm256_hadd_epi32(f[0], f[1]), t1 = _mm256_hadd_epi32(f[2], f[3]);
  const __m256i t2 = _mm256_hadd_epi32(f[4], f[5]), t3 = _mm256_hadd_epi32(f[6], f[7]);
  const __m256i u0 = _mm256_hadd_epi32(t0, t1), u1 = _mm256_hadd_epi32(t2, t3);
  return _mm256_add_epi32(_mm256_permute2x128_si256(u0, u1, 0x20), _mm256_permute2x128_si256(u0, u1, 0x31));
}

void dec_reduce(const void* acc_, size_t n, int32_t* U) {
  const __m512i* acc = static_cast<const __m512i*>(acc_);
  size_t r = 0;
  for (; r + 8 <= n; r += 8) _mm256_storeu_si256(reinterpret_cast<__m256i*>(U + r), hsum8_fold(acc + r));
  for (; r < n; ++r) U[r] = _mm512_reduce_add_epi32(acc[r]);
}

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
    /*dec_acc_bytes=*/sizeof(__m512i),
    /*dec_min_rows=*/14,
    sum_s8, reg_1x4, reg_rows, decode, dec_tile, dec_reduce, epilogue};

}  // namespace lowbit
