// AVX2 variant of the ternary family: the tiles of ternary.h (the packed layout and
// each tile's contract are there; the driver, ternary.cpp, chooses and tiles).
//
// Every tile is an MR x NR block of outputs. Per 32-byte weight block, each of
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

// Lane r of the result = sum of the lanes of v[r], r < 8.
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

// F * S -> U = S (F = 4 for ternary, 2 for binary; exact, |S| < 2^31).
template <int BITS>
inline int32_t reg_u(int64_t FS) {
  return static_cast<int32_t>(FS / (BITS == 2 ? 4 : 2));
}

constexpr size_t kRegPrefetchRows = 2;  // weight rows fetched ahead of the MR x 1 tile

template <int BITS>
void reg_1x4_bits(const int8_t* x, const uint8_t* w, size_t ldw, size_t nrows, size_t nblocks, int32_t* U) {
  for (size_t n = 0; n + 4 <= nrows; n += 4) {
    const uint8_t* wn = w + n * ldw;
    const uint8_t* wr[4] = {wn, wn + ldw, wn + 2 * ldw, wn + 3 * ldw};
    int64_t S[1][4];
    tile_reg_1x4<BITS>(x, wr, nblocks, S);
    for (int j = 0; j < 4; ++j) U[n + j] = reg_u<BITS>(S[0][j]);
  }
}

void reg_1x4(int bits, const int8_t* x, const uint8_t* w, size_t ldw, size_t nrows, size_t nblocks, int32_t* U) {
  if (bits == 2) reg_1x4_bits<2>(x, w, ldw, nrows, nblocks, U);
  else reg_1x4_bits<1>(x, w, ldw, nrows, nblocks, U);
}

template <int BITS, int MR>
void reg_rows_mr(const int8_t* x, size_t ldx, const uint8_t* w, size_t ldw, size_t nrows, size_t nblocks,
                 int32_t* U, size_t ldu) {
  const int8_t* xr[MR];
  for (int i = 0; i < MR; ++i) xr[i] = x + i * ldx;
  int64_t S[MR][4];
  for (size_t n = 0; n < nrows; ++n) {
    tile_reg_rows<BITS, MR>(xr, w + n * ldw, nblocks, kRegPrefetchRows * ldw, S);
    for (int i = 0; i < MR; ++i) U[i * ldu + n] = reg_u<BITS>(S[i][0]);
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
    default: return reg_rows_mr<BITS, 6>(x, ldx, w, ldw, nrows, nblocks, U, ldu);
  }
}

void reg_rows(int bits, const int8_t* x, size_t ldx, int mr, const uint8_t* w, size_t ldw, size_t nrows,
              size_t nblocks, int32_t* U, size_t ldu) {
  if (bits == 2) reg_rows_bits<2>(x, ldx, mr, w, ldw, nrows, nblocks, U, ldu);
  else reg_rows_bits<1>(x, ldx, mr, w, ldw, nrows, nblocks, U, ldu);
}

// ---- large M: decode once per tile, int8 micro-kernel ----------------------
//
// Weight rows are decoded to bytes u in the activation order (wb row r at
// wb + r * kDecChunk); every MR-row activation tile then runs vpmaddubsw on them
// directly. A chunk holds at most 64 products per accumulator, in [-512, 508]
// each: the 16-bit sum stays in [-32768, 32512], and is widened into the int32
// lanes of the accumulator (one __m256i per output) after it.
constexpr size_t kDecChunk = 2048;  // 64 vpmaddubsw steps: the most int16 sums can take

template <int BITS>
void decode_bits(const uint8_t* w, size_t ldw, size_t rows, size_t nblocks, uint8_t* wb) {
  constexpr int P = 8 / BITS;
  const __m256i mask = _mm256_set1_epi8((1 << BITS) - 1);
  for (size_t r = 0; r < rows; ++r) {
    uint8_t* out = wb + r * kDecChunk;
    for (size_t b = 0; b < nblocks; ++b) {
      const __m256i v = load32(w + r * ldw + 32 * b);
      for (int p = 0; p < P; ++p)
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + b * 32 * P + 32 * p),
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
    for (int j = 0; j < NR; ++j) u[j] = load32(wb + j * kDecChunk + k);
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
  const uint8_t* wb1 = wb + kDecChunk;
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
  const uint8_t* wb1 = wb + kDecChunk;
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

void decode(int bits, const uint8_t* w, size_t ldw, size_t rows, size_t nblocks, uint8_t* wb) {
  if (bits == 2) decode_bits<2>(w, ldw, rows, nblocks, wb);
  else decode_bits<1>(w, ldw, rows, nblocks, wb);
}

// Decoded rows in pairs (the 6 x 2 and 4 x 2 tiles in assembly), then one.
template <int MR>
inline void dec_tile_mr(const int8_t* x, size_t ldx, const uint8_t* wb, size_t nr, size_t len, __m256i* acc,
                        size_t ldacc) {
  const int8_t* xr[MR];
  __m256i* va[MR];
  for (int i = 0; i < MR; ++i) xr[i] = x + i * ldx;
  size_t r = 0;
  for (; r + 2 <= nr; r += 2) {
    for (int i = 0; i < MR; ++i) va[i] = acc + i * ldacc + r;
    if constexpr (MR == 6) tile_dec_6x2(xr, wb + r * kDecChunk, len, va);
    else if constexpr (MR == 4) tile_dec_4x2(xr, wb + r * kDecChunk, len, va);
    else tile_dec<MR, 2>(xr, wb + r * kDecChunk, len, va);
  }
  for (; r < nr; ++r) {
    for (int i = 0; i < MR; ++i) va[i] = acc + i * ldacc + r;
    tile_dec<MR, 1>(xr, wb + r * kDecChunk, len, va);
  }
}

void dec_tile(const int8_t* x, size_t ldx, int mr, const uint8_t* wb, size_t nr, size_t len, void* acc_,
              size_t ldacc) {
  __m256i* acc = static_cast<__m256i*>(acc_);
  switch (mr) {
    case 1: return dec_tile_mr<1>(x, ldx, wb, nr, len, acc, ldacc);
    case 2: return dec_tile_mr<2>(x, ldx, wb, nr, len, acc, ldacc);
    case 3: return dec_tile_mr<3>(x, ldx, wb, nr, len, acc, ldacc);
    case 4: return dec_tile_mr<4>(x, ldx, wb, nr, len, acc, ldacc);
    case 5: return dec_tile_mr<5>(x, ldx, wb, nr, len, acc, ldacc);
    default: return dec_tile_mr<6>(x, ldx, wb, nr, len, acc, ldacc);
  }
}

void dec_reduce(const void* acc_, size_t n, int32_t* U) {
  const __m256i* acc = static_cast<const __m256i*>(acc_);
  size_t r = 0;
  for (; r + 8 <= n; r += 8) _mm256_storeu_si256(reinterpret_cast<__m256i*>(U + r), hsum8_epi32(acc + r));
  for (; r < n; ++r) U[r] = hsum_epi32(acc[r]);
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

const TernaryKernels ternary_avx2 = {
    /*reg_max_rows=*/6, /*reg_k_blocks=*/8, /*dec_max_rows=*/6, /*dec_chunk=*/kDecChunk,
    /*dec_acc_bytes=*/sizeof(__m256i),
    // measured on Zen 3: the register tiles beat decoding to memory up to 13 rows
    /*dec_min_rows=*/14,
    sum_s8, reg_1x4, reg_rows, decode, dec_tile, dec_reduce, epilogue};

}  // namespace lowbit
