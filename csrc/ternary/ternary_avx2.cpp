// AVX2 variant of the ternary family (see ternary.h for the packed layout).
//
// Micro-kernel: an MR x NR tile of outputs. Per 32-byte weight block, each of
// the 8/bits planes is one shift + mask giving 32 unsigned codes u, which meet
// 32 activations of each of the MR rows in vpmaddubsw (u8 x s8 -> s16 pair
// sums, never saturating since u <= 2). Products accumulate in 16 bits for 64
// vpmaddubsw results (|sum| <= 64 * 512 = 32768, representable as -32768 at
// worst and 32512 at best), then widen to int32 with vpmaddwd. Activation row
// pointers are shared by the NR weight rows, weight vectors by the MR rows.
#include <immintrin.h>

// Integer adds are associative, and GCC's re-association turns the
// accumulation chains of the micro-kernels into trees of temporaries that
// spill; keep them as written.
#pragma GCC optimize("no-tree-reassoc")

#include "ternary/ternary.h"
#include "ternary/ternary_ops.h"

namespace lowbit {
namespace {

inline int32_t hsum_epi32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}

// Lane r of the result = sum of the lanes of v[r], r < 8 (kTlRows).
inline __m256i hsum8_epi32(const __m256i* v) {
  const __m256i t0 = _mm256_hadd_epi32(v[0], v[1]), t1 = _mm256_hadd_epi32(v[2], v[3]);
  const __m256i t2 = _mm256_hadd_epi32(v[4], v[5]), t3 = _mm256_hadd_epi32(v[6], v[7]);
  const __m256i u0 = _mm256_hadd_epi32(t0, t1), u1 = _mm256_hadd_epi32(t2, t3);
  return _mm256_add_epi32(_mm256_permute2x128_si256(u0, u1, 0x20), _mm256_permute2x128_si256(u0, u1, 0x31));
}

int32_t sum_s8(const int8_t* q, size_t n) {
  const __m256i one8 = _mm256_set1_epi8(1), one16 = _mm256_set1_epi16(1);
  __m256i acc = _mm256_setzero_si256();
  size_t k = 0;
  for (; k + 32 <= n; k += 32) {
    __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + k));
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(one8, v), one16));
  }
  int32_t total = hsum_epi32(acc);
  for (; k < n; ++k) total += q[k];
  return total;
}

// Keeps v in a register at this point: stops the compiler from re-associating
// the accumulation chains into trees of temporaries (which spill) and from
// folding one shared load into every instruction that uses it.
inline void pin(__m256i& v) { __asm__("" : "+x"(v)); }

inline __m256i load32(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// ---- small M: decode in registers ------------------------------------------
//
// One shift of the packed bytes serves two planes: ternary bytes shifted by
// 4g give plane 2g under mask 0x03 (u) and plane 2g+1 under mask 0x0C (4u);
// binary bytes shifted by 2g give plane 2g under 0x01 (u) and 2g+1 under 0x02
// (2u). The scaled planes go to their own accumulators ("hi"), so F * S =
// F * lo + hi with F = 4 (ternary) or 2 (binary). Per 8 blocks an accumulator
// takes at most 32 products of |u| <= 8 pairs: |sum| <= 16 * 2048 = 32768.
// One activation row against four weight rows (M = 1), in assembly: GCC's allocation of the 8 accumulators adds copies and spills
// that cost a third of the throughput. Same arithmetic, same order.
template <int BITS>
inline void tile_reg_1x4(const int8_t* x, const uint8_t* const* wr, size_t nblocks, int64_t (*S)[4]) {
  constexpr int P = 8 / BITS, G = P / 2, SH = 2 * BITS;
  constexpr size_t FLUSH = 8;
  // Masks live in registers: 8 accumulators + 2 activations + 3 temporaries + 2 masks = 15.
  const __m256i mlo = _mm256_set1_epi8(BITS == 2 ? 0x03 : 0x01);
  const __m256i mhi = _mm256_set1_epi8(BITS == 2 ? 0x0C : 0x02);

  const __m256i ones = _mm256_set1_epi16(1);
  __m256i lo32[4], hi32[4];
  for (int j = 0; j < 4; ++j) lo32[j] = hi32[j] = _mm256_setzero_si256();
  const uint8_t *w0 = wr[0], *w1 = wr[1], *w2 = wr[2], *w3 = wr[3];
  // Rows are ldw apart; rows of 4 KiB or less are a page or less each, which the
  // hardware stream prefetchers do not cross: fetch the next tile of rows while
  // this one is computed (prefetches past the end of the array never fault).
  const size_t ahead = 4 * static_cast<size_t>(w1 - w0);
  for (size_t b0 = 0; b0 < nblocks; b0 += FLUSH) {
    const size_t b1 = b0 + FLUSH < nblocks ? b0 + FLUSH : nblocks;
    __m256i l0 = _mm256_setzero_si256(), l1 = l0, l2 = l0, l3 = l0, h0 = l0, h1 = l0, h2 = l0, h3 = l0;
    for (size_t b = b0; b < b1; ++b) {
      const int8_t* xb = x + b * 32 * P;
      const size_t wo = 32 * b;
      if ((b & 1) == 0) {  // one 64-byte line per two blocks: the same place in the next four rows, into L2
        _mm_prefetch(reinterpret_cast<const char*>(w0 + ahead + wo), _MM_HINT_T1);
        _mm_prefetch(reinterpret_cast<const char*>(w1 + ahead + wo), _MM_HINT_T1);
        _mm_prefetch(reinterpret_cast<const char*>(w2 + ahead + wo), _MM_HINT_T1);
        _mm_prefetch(reinterpret_cast<const char*>(w3 + ahead + wo), _MM_HINT_T1);
      }
#pragma GCC unroll 4
      for (int g = 0; g < G; ++g) {
        __m256i xl, xh, v, ul, uh;
#define LB_ROW(W, L, H)                                              \
  "vmovdqu (%[" #W "],%[wo]), %[v]\n\t"                              \
  LB_SHIFT                                                           \
  "vpand %[ml], %[v], %[ul]\n\t"                                     \
  "vpand %[mh], %[v], %[uh]\n\t"                                     \
  "vpmaddubsw %[xl], %[ul], %[ul]\n\t"                               \
  "vpmaddubsw %[xh], %[uh], %[uh]\n\t"                               \
  "vpaddw %[ul], %[" #L "], %[" #L "]\n\t"                           \
  "vpaddw %[uh], %[" #H "], %[" #H "]\n\t"
        if (g == 0) {
#define LB_SHIFT
          __asm__("vmovdqu (%[xb]), %[xl]\n\t"
                    "vmovdqu 32(%[xb]), %[xh]\n\t"
                    LB_ROW(w0, l0, h0) LB_ROW(w1, l1, h1) LB_ROW(w2, l2, h2) LB_ROW(w3, l3, h3)
                    : [l0] "+x"(l0), [l1] "+x"(l1), [l2] "+x"(l2), [l3] "+x"(l3), [h0] "+x"(h0), [h1] "+x"(h1),
                      [h2] "+x"(h2), [h3] "+x"(h3), [xl] "=&x"(xl), [xh] "=&x"(xh), [v] "=&x"(v), [ul] "=&x"(ul),
                      [uh] "=&x"(uh)
                    : [xb] "r"(xb + 64 * g), [w0] "r"(w0), [w1] "r"(w1), [w2] "r"(w2), [w3] "r"(w3), [wo] "r"(wo),
                      [ml] "x"(mlo), [mh] "x"(mhi), [sh] "n"(0)
                    : "memory");
#undef LB_SHIFT
        } else {
#define LB_SHIFT "vpsrlw %[sh], %[v], %[v]\n\t"
          __asm__("vmovdqu (%[xb]), %[xl]\n\t"
                    "vmovdqu 32(%[xb]), %[xh]\n\t"
                    LB_ROW(w0, l0, h0) LB_ROW(w1, l1, h1) LB_ROW(w2, l2, h2) LB_ROW(w3, l3, h3)
                    : [l0] "+x"(l0), [l1] "+x"(l1), [l2] "+x"(l2), [l3] "+x"(l3), [h0] "+x"(h0), [h1] "+x"(h1),
                      [h2] "+x"(h2), [h3] "+x"(h3), [xl] "=&x"(xl), [xh] "=&x"(xh), [v] "=&x"(v), [ul] "=&x"(ul),
                      [uh] "=&x"(uh)
                    : [xb] "r"(xb + 64 * g), [w0] "r"(w0), [w1] "r"(w1), [w2] "r"(w2), [w3] "r"(w3), [wo] "r"(wo),
                      [ml] "x"(mlo), [mh] "x"(mhi), [sh] "n"(SH * g)
                    : "memory");
#undef LB_SHIFT
        }
#undef LB_ROW
      }
    }
    const __m256i l[4] = {l0, l1, l2, l3}, h[4] = {h0, h1, h2, h3};
    for (int j = 0; j < 4; ++j) {
      lo32[j] = _mm256_add_epi32(lo32[j], _mm256_madd_epi16(l[j], ones));
      hi32[j] = _mm256_add_epi32(hi32[j], _mm256_madd_epi16(h[j], ones));
    }
  }
  constexpr int64_t F = BITS == 2 ? 4 : 2;
  for (int j = 0; j < 4; ++j) S[0][j] = F * hsum_epi32(lo32[j]) + hsum_epi32(hi32[j]);
}

// A few activation rows (2..6) against one weight row: the planes are decoded once in
// registers and meet each row's activations as memory operands of vpmaddubsw, so the
// shift and masks are shared by MR rows (the 1 x 4 tile above shares activation loads
// instead). Registers: 2 MR accumulators + the packed vector + 2 planes + a product.
// The 16-bit accumulators follow the bound above (flush every 8 blocks) and are widened
// into int32 sums kept in memory.
inline void plane_row(const int8_t* x, __m256i ul, __m256i uh, __m256i& lo, __m256i& hi) {
  __m256i t;
  __asm__("vpmaddubsw (%[x]), %[ul], %[t]\n\t"
          "vpaddw %[t], %[lo], %[lo]\n\t"
          "vpmaddubsw 32(%[x]), %[uh], %[t]\n\t"
          "vpaddw %[t], %[hi], %[hi]\n\t"
          : [lo] "+x"(lo), [hi] "+x"(hi), [t] "=&x"(t)
          : [ul] "x"(ul), [uh] "x"(uh), [x] "r"(x)
          : "memory");
}

// wrow + ahead is fetched while wrow is computed: the same blocks of a later weight row.
template <int BITS, int MR>
inline void tile_reg_rows(const int8_t* const* xr, const uint8_t* wrow, size_t nblocks, size_t ahead,
                          int64_t (*S)[4]) {
  static_assert(MR >= 1 && MR <= 6, "2 MR accumulators + 4 temporaries fit 16 registers");
  constexpr int P = 8 / BITS, G = P / 2, SH = 2 * BITS;
  constexpr size_t FLUSH = 8;
  const __m256i mlo = _mm256_set1_epi8(BITS == 2 ? 0x03 : 0x01);
  const __m256i mhi = _mm256_set1_epi8(BITS == 2 ? 0x0C : 0x02);
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i sum32[6][2];  // int32 lanes: [row][lo, hi]; in memory, touched once per flush
  for (int i = 0; i < MR; ++i) sum32[i][0] = sum32[i][1] = _mm256_setzero_si256();
  const int8_t *x0 = xr[0], *x1 = xr[MR > 1 ? 1 : 0], *x2 = xr[MR > 2 ? 2 : 0], *x3 = xr[MR > 3 ? 3 : 0],
               *x4 = xr[MR > 4 ? 4 : 0], *x5 = xr[MR > 5 ? 5 : 0];
  for (size_t b0 = 0; b0 < nblocks; b0 += FLUSH) {
    const size_t b1 = b0 + FLUSH < nblocks ? b0 + FLUSH : nblocks;
    __m256i l0 = _mm256_setzero_si256(), h0 = l0, l1 = l0, h1 = l0, l2 = l0, h2 = l0, l3 = l0, h3 = l0, l4 = l0,
            h4 = l0, l5 = l0, h5 = l0;
    for (size_t b = b0; b < b1; ++b) {
      const size_t xo = b * 32 * P;
      if ((b & 1) == 0) _mm_prefetch(reinterpret_cast<const char*>(wrow + ahead + 32 * b), _MM_HINT_T1);
#pragma GCC unroll 4
      for (int g = 0; g < G; ++g) {
        __m256i v = load32(wrow + 32 * b);
        if (g) v = _mm256_srli_epi16(v, SH * g);
        const __m256i ul = _mm256_and_si256(v, mlo), uh = _mm256_and_si256(v, mhi);
        const size_t o = xo + 64 * g;
        plane_row(x0 + o, ul, uh, l0, h0);
        if constexpr (MR > 1) plane_row(x1 + o, ul, uh, l1, h1);
        if constexpr (MR > 2) plane_row(x2 + o, ul, uh, l2, h2);
        if constexpr (MR > 3) plane_row(x3 + o, ul, uh, l3, h3);
        if constexpr (MR > 4) plane_row(x4 + o, ul, uh, l4, h4);
        if constexpr (MR > 5) plane_row(x5 + o, ul, uh, l5, h5);
      }
    }
    auto widen = [&](int i, __m256i lo, __m256i hi) {
      sum32[i][0] = _mm256_add_epi32(sum32[i][0], _mm256_madd_epi16(lo, ones));
      sum32[i][1] = _mm256_add_epi32(sum32[i][1], _mm256_madd_epi16(hi, ones));
    };
    widen(0, l0, h0);
    if constexpr (MR > 1) widen(1, l1, h1);
    if constexpr (MR > 2) widen(2, l2, h2);
    if constexpr (MR > 3) widen(3, l3, h3);
    if constexpr (MR > 4) widen(4, l4, h4);
    if constexpr (MR > 5) widen(5, l5, h5);
  }
  constexpr int64_t F = BITS == 2 ? 4 : 2;
  for (int i = 0; i < MR; ++i) S[i][0] = F * hsum_epi32(sum32[i][0]) + hsum_epi32(sum32[i][1]);
}

// F * S -> acc: ternary acc = S - qsum, binary acc = 2 S - qsum.
template <int BITS>
inline int32_t finish_reg(int64_t FS, int32_t qsum) {
  return static_cast<int32_t>((BITS == 2 ? FS / 4 : FS) - qsum);
}

// The MR x 1 tile reads its MR activation rows once per weight row: they must stay in
// L1 beside the streaming weights. Longer rows are cut into chunks of K of at most
// kRegActBytes (all MR rows), each passing over every weight row of [n0, n1).
constexpr size_t kRegActBytes = 24 << 10;
constexpr size_t kRegPrefetchRows = 2;  // weight rows fetched ahead of the MR x 1 tile

// Output channels [n0, n1) for MR activation rows: the 1 x 4 tile for one row (a 1 x 1
// tile for the last n1 - n0 mod 4 channels), the MR x 1 tile otherwise.
template <int BITS, int MR>
inline void rows_reg(const int8_t* q, size_t ldq, const int32_t* qsum, const uint8_t* w, size_t ldw,
                     size_t nblocks, size_t n0, size_t n1, int32_t* acc, size_t ldc) {
  constexpr size_t KB = 32 * (8 / BITS);
  const int8_t* xr[MR];
  for (int i = 0; i < MR; ++i) xr[i] = q + i * ldq;
  int64_t S[MR][4];
  size_t n = n0;
  if constexpr (MR == 1) {
    for (; n + 4 <= n1; n += 4) {
      const uint8_t* wr[4] = {w + n * ldw, w + (n + 1) * ldw, w + (n + 2) * ldw, w + (n + 3) * ldw};
      tile_reg_1x4<BITS>(xr[0], wr, nblocks, S);
      for (int j = 0; j < 4; ++j) acc[n + j - n0] = finish_reg<BITS>(S[0][j], qsum[0]);
    }
    for (; n < n1; ++n) {
      tile_reg_rows<BITS, 1>(xr, w + n * ldw, nblocks, kRegPrefetchRows * ldw, S);
      acc[n - n0] = finish_reg<BITS>(S[0][0], qsum[0]);
    }
    return;
  }
  // Equal chunks of whole 16-bit flushes (8 blocks).
  const size_t nchunks = (MR * nblocks * KB + kRegActBytes - 1) / kRegActBytes;
  const size_t cb = ((nblocks + nchunks - 1) / nchunks + 7) / 8 * 8;
  for (size_t c0 = 0; c0 < nblocks; c0 += cb) {
    const size_t len = nblocks - c0 < cb ? nblocks - c0 : cb;
    const int8_t* xc[MR];
    for (int i = 0; i < MR; ++i) xc[i] = xr[i] + c0 * KB;
    for (n = n0; n < n1; ++n) {
      tile_reg_rows<BITS, MR>(xc, w + n * ldw + c0 * 32, len, kRegPrefetchRows * ldw, S);
      for (int i = 0; i < MR; ++i) {
        // acc = sum over chunks of F * S, minus qsum (wrapping int32 adds: the total fits)
        int32_t& a = acc[i * ldc + (n - n0)];
        const int32_t part = finish_reg<BITS>(S[i][0], c0 == 0 ? qsum[i] : 0);
        a = c0 == 0 ? part : static_cast<int32_t>(static_cast<uint32_t>(a) + static_cast<uint32_t>(part));
      }
    }
  }
}

// ---- large M: decode once per tile, int8 micro-kernel ----------------------
//
// Rows [nb, nb + kTlRows) and blocks [c0, c1) are decoded to bytes u in the
// activation order (wb row r at wb + r * kTlChunk); every MR-row activation
// tile then runs vpmaddubsw on them directly. A chunk holds at most 64 products
// per accumulator, in [-512, 508] each: the 16-bit sum stays in [-32768, 32512],
// and is widened into vacc (int32 lanes) after it.
template <int BITS>
inline void decode_rows(const uint8_t* w, size_t ldw, size_t rows, size_t c0, size_t c1, uint8_t* wb) {
  constexpr int P = 8 / BITS;
  const __m256i mask = _mm256_set1_epi8((1 << BITS) - 1);
  for (size_t r = 0; r < rows; ++r) {
    uint8_t* out = wb + r * kTlChunk;
    for (size_t b = c0; b < c1; ++b) {
      const __m256i v = load32(w + r * ldw + 32 * b);
      for (int p = 0; p < P; ++p)
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + (b - c0) * 32 * P + 32 * p),
                            _mm256_and_si256(p ? _mm256_srli_epi16(v, BITS * p) : v, mask));
    }
  }
}

template <int MR, int NR>
inline void tile_dec(const int8_t* const* xr, const uint8_t* wb, size_t len, __m256i* const* vacc) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i acc[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm256_setzero_si256();
#pragma GCC unroll 2
  for (size_t k = 0; k < len; k += 32) {
    __m256i u[NR];
    for (int j = 0; j < NR; ++j) u[j] = load32(wb + j * kTlChunk + k);
    for (int i = 0; i < MR; ++i) {
      __m256i xv = load32(xr[i] + k);
      if (NR > 1) pin(xv);
      for (int j = 0; j < NR; ++j) {
        acc[i][j] = _mm256_add_epi16(acc[i][j], _mm256_maddubs_epi16(u[j], xv));
      }
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) vacc[i][j] = _mm256_add_epi32(vacc[i][j], _mm256_madd_epi16(acc[i][j], ones));
}

// The hot case of tile_dec (four activation rows, two weight rows) in assembly,
// for the same reason as tile_reg_1x4.
inline void tile_dec_4x2(const int8_t* const* xr, const uint8_t* wb, size_t len, __m256i* const* vacc) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i a00 = _mm256_setzero_si256(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00,
          a31 = a00;
  const int8_t *x0 = xr[0], *x1 = xr[1], *x2 = xr[2], *x3 = xr[3];
  const uint8_t* wb1 = wb + kTlChunk;
  // len is a multiple of 32 * (8 / bits) >= 128: two steps per iteration.
  for (size_t k = 0; k < len; k += 32) {
    __m256i u0, u1, xv, t;
#define LB_XROW(X, A0, A1)                           \
  "vmovdqu (%[" #X "],%[k]), %[xv]\n\t"              \
  "vpmaddubsw %[xv], %[u0], %[t]\n\t"                \
  "vpaddw %[t], %[" #A0 "], %[" #A0 "]\n\t"          \
  "vpmaddubsw %[xv], %[u1], %[t]\n\t"                \
  "vpaddw %[t], %[" #A1 "], %[" #A1 "]\n\t"
    __asm__("vmovdqu (%[w0],%[k]), %[u0]\n\t"
            "vmovdqu (%[w1],%[k]), %[u1]\n\t"
            LB_XROW(x0, a00, a01) LB_XROW(x1, a10, a11) LB_XROW(x2, a20, a21) LB_XROW(x3, a30, a31)
            : [a00] "+x"(a00), [a01] "+x"(a01), [a10] "+x"(a10), [a11] "+x"(a11), [a20] "+x"(a20),
              [a21] "+x"(a21), [a30] "+x"(a30), [a31] "+x"(a31), [u0] "=&x"(u0), [u1] "=&x"(u1), [xv] "=&x"(xv),
              [t] "=&x"(t)
            : [x0] "r"(x0), [x1] "r"(x1), [x2] "r"(x2), [x3] "r"(x3), [w0] "r"(wb), [w1] "r"(wb1), [k] "r"(k)
            : "memory");
#undef LB_XROW
  }
  const __m256i a[4][2] = {{a00, a01}, {a10, a11}, {a20, a21}, {a30, a31}};
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 2; ++j) vacc[i][j] = _mm256_add_epi32(vacc[i][j], _mm256_madd_epi16(a[i][j], ones));
}

// Six activation rows, two weight rows: 12 accumulators + 2 weights + 1 activation + 1 product = 16
// registers, 32 instructions per 384 multiply-adds (the 4x2 tile needs 25 per 256).
inline void tile_dec_6x2(const int8_t* const* xr, const uint8_t* wb, size_t len, __m256i* const* vacc) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i a00 = _mm256_setzero_si256(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00,
          a31 = a00, a40 = a00, a41 = a00, a50 = a00, a51 = a00;
  const int8_t *x0 = xr[0], *x1 = xr[1], *x2 = xr[2], *x3 = xr[3], *x4 = xr[4], *x5 = xr[5];
  const uint8_t* wb1 = wb + kTlChunk;
  for (size_t k = 0; k < len; k += 32) {
    __m256i u0, u1, xv, t;
#define LB_XROW(X, A0, A1)                           \
  "vmovdqu (%[" #X "],%[k]), %[xv]\n\t"              \
  "vpmaddubsw %[xv], %[u0], %[t]\n\t"                \
  "vpaddw %[t], %[" #A0 "], %[" #A0 "]\n\t"          \
  "vpmaddubsw %[xv], %[u1], %[t]\n\t"                \
  "vpaddw %[t], %[" #A1 "], %[" #A1 "]\n\t"
    // Two statements (an asm takes at most 30 operands); u0 and u1 stay in registers between them.
    __asm__("vmovdqu (%[w0],%[k]), %[u0]\n\t"
            "vmovdqu (%[w1],%[k]), %[u1]\n\t"
            LB_XROW(x0, a00, a01) LB_XROW(x1, a10, a11) LB_XROW(x2, a20, a21)
            : [a00] "+x"(a00), [a01] "+x"(a01), [a10] "+x"(a10), [a11] "+x"(a11), [a20] "+x"(a20),
              [a21] "+x"(a21), [u0] "=&x"(u0), [u1] "=&x"(u1), [xv] "=&x"(xv), [t] "=&x"(t)
            : [x0] "r"(x0), [x1] "r"(x1), [x2] "r"(x2), [w0] "r"(wb), [w1] "r"(wb1), [k] "r"(k)
            : "memory");
    __asm__(LB_XROW(x3, a30, a31) LB_XROW(x4, a40, a41) LB_XROW(x5, a50, a51)
            : [a30] "+x"(a30), [a31] "+x"(a31), [a40] "+x"(a40), [a41] "+x"(a41), [a50] "+x"(a50),
              [a51] "+x"(a51), [xv] "=&x"(xv), [t] "=&x"(t)
            : [u0] "x"(u0), [u1] "x"(u1), [x3] "r"(x3), [x4] "r"(x4), [x5] "r"(x5), [k] "r"(k)
            : "memory");
#undef LB_XROW
  }
  const __m256i a[6][2] = {{a00, a01}, {a10, a11}, {a20, a21}, {a30, a31}, {a40, a41}, {a50, a51}};
  for (int i = 0; i < 6; ++i)
    for (int j = 0; j < 2; ++j) vacc[i][j] = _mm256_add_epi32(vacc[i][j], _mm256_madd_epi16(a[i][j], ones));
}

template <int MR>
inline void panel_dec(const int8_t* q, size_t ldq, size_t k0, const uint8_t* wb, size_t rows, size_t len,
                      __m256i* vacc_m) {
  const int8_t* xr[MR];
  __m256i* va[MR];
  for (int i = 0; i < MR; ++i) xr[i] = q + i * ldq + k0;
  size_t r = 0;
  for (; r + 2 <= rows; r += 2) {
    for (int i = 0; i < MR; ++i) va[i] = vacc_m + i * kTlRows + r;
    if (MR == 6) tile_dec_6x2(xr, wb + r * kTlChunk, len, va);
    else if (MR == 4) tile_dec_4x2(xr, wb + r * kTlChunk, len, va);
    else tile_dec<MR, 2>(xr, wb + r * kTlChunk, len, va);
  }
  for (; r < rows; ++r) {
    for (int i = 0; i < MR; ++i) va[i] = vacc_m + i * kTlRows + r;
    tile_dec<MR, 1>(xr, wb + r * kTlChunk, len, va);
  }
}

template <int BITS>
void gemm_dec(const int8_t* q, size_t M, size_t ldq, const int32_t* qsum, const uint8_t* w, size_t ldw,
              size_t nblocks, size_t n0, size_t n1, int32_t* acc, size_t ldc, void* scratch) {
  constexpr size_t P = 8 / BITS, CB = kTlChunk / (32 * P);  // blocks per chunk
  uint8_t* wb = static_cast<uint8_t*>(scratch);
  __m256i* vacc = reinterpret_cast<__m256i*>(wb + kTlRows * kTlChunk);  // [M][kTlRows]
  static_assert(kTlRows % 8 == 0, "hsum8_epi32 reduces 8 rows at a time");
  for (size_t nb = n0; nb < n1; nb += kTlRows) {
    const size_t rows = nb + kTlRows < n1 ? kTlRows : n1 - nb;
    for (size_t i = 0; i < M * kTlRows; ++i) vacc[i] = _mm256_setzero_si256();
    for (size_t c0 = 0; c0 < nblocks; c0 += CB) {
      const size_t c1 = c0 + CB < nblocks ? c0 + CB : nblocks;
      decode_rows<BITS>(w + nb * ldw, ldw, rows, c0, c1, wb);
      const size_t k0 = c0 * 32 * P, len = (c1 - c0) * 32 * P;
      size_t m = 0;
      // Tiles of 6 rows, but 8 = 4 + 4 and 2 or 3 left = 4 + 4 / 4 + 5 (the 4-row kernel is in assembly too).
      for (; M - m >= 6 && M - m != 8 && M - m != 9; m += 6)
        panel_dec<6>(q + m * ldq, ldq, k0, wb, rows, len, vacc + m * kTlRows);
      if (M - m >= 8) panel_dec<4>(q + m * ldq, ldq, k0, wb, rows, len, vacc + m * kTlRows), m += 4;
      switch (M - m) {
        case 5: panel_dec<5>(q + m * ldq, ldq, k0, wb, rows, len, vacc + m * kTlRows); break;
        case 4: panel_dec<4>(q + m * ldq, ldq, k0, wb, rows, len, vacc + m * kTlRows); break;
        case 3: panel_dec<3>(q + m * ldq, ldq, k0, wb, rows, len, vacc + m * kTlRows); break;
        case 2: panel_dec<2>(q + m * ldq, ldq, k0, wb, rows, len, vacc + m * kTlRows); break;
        case 1: panel_dec<1>(q + m * ldq, ldq, k0, wb, rows, len, vacc + m * kTlRows); break;
        default: break;
      }
    }
    for (size_t m = 0; m < M; ++m)
      for (size_t g = 0; g < rows; g += 8) {
        __m256i S = hsum8_epi32(vacc + m * kTlRows + g);  // lane r: row nb + g + r
        if (BITS == 1) S = _mm256_add_epi32(S, S);
        S = _mm256_sub_epi32(S, _mm256_set1_epi32(qsum[m]));
        int32_t* out = acc + m * ldc + (nb + g - n0);
        if (rows - g >= 8) {
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), S);
        } else {
          alignas(32) int32_t tmp[8];
          _mm256_store_si256(reinterpret_cast<__m256i*>(tmp), S);
          for (size_t r = 0; r < rows - g; ++r) out[r] = tmp[r];
        }
      }
  }
}

// Below this many activation rows the weights are decoded in registers (measured: the
// register tiles beat decoding to memory up to 13 rows, on Zen 3).
constexpr size_t kDecodeMinRows = 14;

template <int BITS>
void rows_reg_any(const int8_t* q, size_t mr, size_t ldq, const int32_t* qsum, const uint8_t* w, size_t ldw,
                  size_t nblocks, size_t n0, size_t n1, int32_t* acc, size_t ldc) {
  switch (mr) {
    case 1: return rows_reg<BITS, 1>(q, ldq, qsum, w, ldw, nblocks, n0, n1, acc, ldc);
    case 2: return rows_reg<BITS, 2>(q, ldq, qsum, w, ldw, nblocks, n0, n1, acc, ldc);
    case 3: return rows_reg<BITS, 3>(q, ldq, qsum, w, ldw, nblocks, n0, n1, acc, ldc);
    case 4: return rows_reg<BITS, 4>(q, ldq, qsum, w, ldw, nblocks, n0, n1, acc, ldc);
    case 5: return rows_reg<BITS, 5>(q, ldq, qsum, w, ldw, nblocks, n0, n1, acc, ldc);
    default: return rows_reg<BITS, 6>(q, ldq, qsum, w, ldw, nblocks, n0, n1, acc, ldc);
  }
}

template <int BITS>
void gemm_bits(const int8_t* q, size_t M, size_t ldq, const int32_t* qsum, const uint8_t* w, size_t ldw,
               size_t nblocks, size_t n0, size_t n1, int32_t* acc, size_t ldc, void* scratch) {
  if (M >= kDecodeMinRows) {
    gemm_dec<BITS>(q, M, ldq, qsum, w, ldw, nblocks, n0, n1, acc, ldc, scratch);
    return;
  }
  // tiles of near-equal height <= 6
  const size_t ntiles = (M + 5) / 6;
  for (size_t t = 0, m = 0; t < ntiles; ++t) {
    const size_t mr = (M - m + (ntiles - t) - 1) / (ntiles - t);
    rows_reg_any<BITS>(q + m * ldq, mr, ldq, qsum + m, w, ldw, nblocks, n0, n1, acc + m * ldc, ldc);
    m += mr;
  }
}

void gemm(int bits, const int8_t* q, size_t M, size_t ldq, const int32_t* qsum, const uint8_t* w, size_t ldw,
          size_t nblocks, size_t n0, size_t n1, int32_t* acc, size_t ldc, void* scratch) {
  if (bits == 2) gemm_bits<2>(q, M, ldq, qsum, w, ldw, nblocks, n0, n1, acc, ldc, scratch);
  else gemm_bits<1>(q, M, ldq, qsum, w, ldw, nblocks, n0, n1, acc, ldc, scratch);
}

void epilogue(const int32_t* acc, size_t N, float sx, const float* gw, size_t gw_stride, const float* bias,
              float* y) {
  const __m256 vsx = _mm256_set1_ps(sx);
  size_t n = 0;
  if (gw_stride == 0) {
    const __m256 f = _mm256_div_ps(_mm256_set1_ps(gw[0]), vsx);
    for (; n + 8 <= N; n += 8) {
      __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + n))), f);
      if (bias) v = _mm256_add_ps(v, _mm256_loadu_ps(bias + n));
      _mm256_storeu_ps(y + n, v);
    }
  } else {
    for (; n + 8 <= N; n += 8) {
      __m256 f = _mm256_div_ps(_mm256_loadu_ps(gw + n), vsx);
      __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + n))), f);
      if (bias) v = _mm256_add_ps(v, _mm256_loadu_ps(bias + n));
      _mm256_storeu_ps(y + n, v);
    }
  }
  for (; n < N; ++n) {
    float v = tl_out_one(acc[n], gw[n * gw_stride], sx);
    y[n] = bias ? v + bias[n] : v;
  }
}

}  // namespace

const TernaryKernels ternary_avx2 = {sum_s8, gemm, epilogue};

}  // namespace lowbit
