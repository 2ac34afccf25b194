// Packing kernels, AVX2 variant: widths 1, 2, 4 and base-3 in vectors; other
// widths and every tail go through the scalar helpers of pack_ops.h.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "pack/pack.h"
#include "pack/pack_ops.h"

namespace lowbit {
namespace {

inline __m256i load32(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
inline void store32(void* p, __m256i v) { _mm256_storeu_si256(static_cast<__m256i*>(p), v); }
inline __m256i bcast16(const uint8_t* t) {
  return _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(t)));
}
// All bytes of v <= the matching bytes of lim (unsigned).
inline bool all_le(__m256i v, __m256i lim) {
  return _mm256_movemask_epi8(_mm256_cmpeq_epi8(_mm256_max_epu8(v, lim), lim)) == -1;
}

// ---- pack ---------------------------------------------------------------

bool pack1(const uint8_t* q, size_t n, const PackMap& m, uint8_t* out) {
  const __m256i one = _mm256_set1_epi8(1), other = _mm256_set1_epi8(static_cast<char>(m.other));
  __m256i good = _mm256_set1_epi8(-1);
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m256i v = load32(q + i);
    __m256i is1 = _mm256_cmpeq_epi8(v, one);
    good = _mm256_and_si256(good, _mm256_or_si256(is1, _mm256_cmpeq_epi8(v, other)));
    uint32_t bits = static_cast<uint32_t>(_mm256_movemask_epi8(is1));
    std::memcpy(out + i / 8, &bits, 4);
  }
  bool ok = _mm256_movemask_epi8(good) == -1;
  return pack_any_scalar(q + i, n - i, m, out + i / 8) && ok;
}

bool pack2(const uint8_t* q, size_t n, const PackMap& m, uint8_t* out) {
  const __m256i off = _mm256_set1_epi8(static_cast<char>(m.off)), xr = _mm256_set1_epi8(static_cast<char>(m.xr));
  const __m256i lim = _mm256_set1_epi8(static_cast<char>(m.lim));
  const __m256i w2 = _mm256_set1_epi16(0x0401), w4 = _mm256_set1_epi32(0x00100001);
  const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  __m256i mx = _mm256_setzero_si256();
  size_t i = 0;
  for (; i + 128 <= n; i += 128) {
    __m256i r[4];
    for (int k = 0; k < 4; ++k) {
      __m256i v = _mm256_add_epi8(load32(q + i + 32 * k), off);
      mx = _mm256_max_epu8(mx, v);
      __m256i f = _mm256_xor_si256(v, xr);
      r[k] = _mm256_madd_epi16(_mm256_maddubs_epi16(f, w2), w4);  // f0 + 4 f1 + 16 f2 + 64 f3 per u32
    }
    __m256i b = _mm256_packus_epi16(_mm256_packus_epi32(r[0], r[1]), _mm256_packus_epi32(r[2], r[3]));
    store32(out + i / 4, _mm256_permutevar8x32_epi32(b, perm));
  }
  bool ok = all_le(mx, lim);
  return pack_any_scalar(q + i, n - i, m, out + i / 4) && ok;
}

bool pack4(const uint8_t* q, size_t n, const PackMap& m, uint8_t* out) {
  const __m256i off = _mm256_set1_epi8(static_cast<char>(m.off)), xr = _mm256_set1_epi8(static_cast<char>(m.xr));
  const __m256i lim = _mm256_set1_epi8(static_cast<char>(m.lim));
  const __m256i w = _mm256_set1_epi16(0x1001);
  __m256i mx = _mm256_setzero_si256();
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    __m256i a = _mm256_add_epi8(load32(q + i), off), b = _mm256_add_epi8(load32(q + i + 32), off);
    mx = _mm256_max_epu8(mx, _mm256_max_epu8(a, b));
    __m256i pa = _mm256_maddubs_epi16(_mm256_xor_si256(a, xr), w);  // f0 + 16 f1 per u16
    __m256i pb = _mm256_maddubs_epi16(_mm256_xor_si256(b, xr), w);
    store32(out + i / 2, _mm256_permute4x64_epi64(_mm256_packus_epi16(pa, pb), 0xD8));
  }
  bool ok = all_le(mx, lim);
  return pack_any_scalar(q + i, n - i, m, out + i / 2) && ok;
}

inline void pack_base3_step(const int8_t* q, uint8_t* out, __m256i& mx) {
  const __m256i one = _mm256_set1_epi8(1);
  const __m256i spread = _mm256_setr_epi8(0, 1, 2, 3, 4, -1, -1, -1, 5, 6, 7, 8, 9, -1, -1, -1,
                                          0, 1, 2, 3, 4, -1, -1, -1, 5, 6, 7, 8, 9, -1, -1, -1);
  const __m256i pw = _mm256_setr_epi8(1, 3, 9, 27, 81, 0, 0, 0, 1, 3, 9, 27, 81, 0, 0, 0,
                                      1, 3, 9, 27, 81, 0, 0, 0, 1, 3, 9, 27, 81, 0, 0, 0);
  const __m256i gather = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
  const __m256i transpose = _mm256_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15,
                                             0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  const __m256i zero = _mm256_setzero_si256();
  __m256i acc = zero;
  for (int j = 0; j < 8; ++j) {
    const int8_t* s = q + 20 * j;
    __m256i x = _mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(s + 10), reinterpret_cast<const __m128i*>(s));
    __m256i d = _mm256_shuffle_epi8(_mm256_add_epi8(x, one), spread);  // digits q + 1, zero padded
    mx = _mm256_max_epu8(mx, d);
    __m256i g = _mm256_sad_epu8(_mm256_maddubs_epi16(d, pw), zero);
    acc = _mm256_or_si256(acc, _mm256_slli_epi64(g, 8 * j));   // u64 lane l, byte j: group 4j + l
  }
  store32(out, _mm256_shuffle_epi8(_mm256_permutevar8x32_epi32(acc, gather), transpose));
}

// 160 codes -> 32 bytes per step (reads 166 codes). Register j takes groups
// 4j..4j+3 (codes 20j..20j+19) as two 128-bit halves of two groups each, spread
// to 8-byte slots; maddubs with the powers of 3 and a byte sum (sad) leave each
// group's byte in a u64 lane; one permute and pshufb put the 32 bytes in order.
bool pack_base3(const int8_t* q, size_t n, uint8_t* out) {
  __m256i mx = _mm256_setzero_si256();
  size_t i = 0;
  for (; i + 176 <= n; i += 160) pack_base3_step(q + i, out + i / 5, mx);
  while (i < n) {  // the rest through a copy padded with -1 (trit 0, the padding)
    alignas(32) int8_t buf[192];
    alignas(32) uint8_t obuf[32];
    std::memset(buf, -1, sizeof buf);
    size_t len = std::min<size_t>(160, n - i);
    std::memcpy(buf, q + i, len);
    pack_base3_step(buf, obuf, mx);
    std::memcpy(out + i / 5, obuf, (len + 4) / 5);
    i += len;
  }
  return all_le(mx, _mm256_set1_epi8(2));
}

// ---- unpack -------------------------------------------------------------

bool unpack1(const uint8_t* p, size_t n, const PackMap& m, uint8_t* out) {
  const __m256i lut = bcast16(m.dec);
  const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                          2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
  const __m256i bit = _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201ULL));
  const __m256i one = _mm256_set1_epi8(1);
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    uint32_t w;
    std::memcpy(&w, p + i / 8, 4);
    __m256i x = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(w)), spread);
    __m256i f = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(x, bit), bit), one);
    store32(out + i, _mm256_shuffle_epi8(lut, f));
  }
  return unpack_any_scalar(p + i / 8, n - i, m, out + i);
}

// 32 bytes -> 128 codes: field k of every byte (shift by 2k, mask), the code
// table, then byte/word interleaves within 128-bit lanes and 16-byte stores.
bool unpack2(const uint8_t* p, size_t n, const PackMap& m, uint8_t* out) {
  const __m256i lut = bcast16(m.dec), badlut = bcast16(m.dec_bad);
  const __m256i three = _mm256_set1_epi8(3);
  __m256i bad = _mm256_setzero_si256();
  size_t i = 0;
  for (; i + 128 <= n; i += 128) {
    __m256i b = load32(p + i / 4);
    __m256i f0 = _mm256_and_si256(b, three), f1 = _mm256_and_si256(_mm256_srli_epi16(b, 2), three);
    __m256i f2 = _mm256_and_si256(_mm256_srli_epi16(b, 4), three), f3 = _mm256_and_si256(_mm256_srli_epi16(b, 6), three);
    bad = _mm256_or_si256(bad, _mm256_or_si256(_mm256_or_si256(_mm256_shuffle_epi8(badlut, f0),
                                                                 _mm256_shuffle_epi8(badlut, f1)),
                                                _mm256_or_si256(_mm256_shuffle_epi8(badlut, f2),
                                                                _mm256_shuffle_epi8(badlut, f3))));
    __m256i c0 = _mm256_shuffle_epi8(lut, f0), c1 = _mm256_shuffle_epi8(lut, f1);
    __m256i c2 = _mm256_shuffle_epi8(lut, f2), c3 = _mm256_shuffle_epi8(lut, f3);
    __m256i t0 = _mm256_unpacklo_epi8(c0, c1), t1 = _mm256_unpackhi_epi8(c0, c1);
    __m256i t2 = _mm256_unpacklo_epi8(c2, c3), t3 = _mm256_unpackhi_epi8(c2, c3);
    // u0 = codes of bytes 0-3 | 16-19, u1 = 4-7 | 20-23, u2 = 8-11 | 24-27, u3 = 12-15 | 28-31
    __m256i u[4] = {_mm256_unpacklo_epi16(t0, t2), _mm256_unpackhi_epi16(t0, t2), _mm256_unpacklo_epi16(t1, t3),
                    _mm256_unpackhi_epi16(t1, t3)};
    uint8_t* o = out + i;
    for (int k = 0; k < 4; ++k) {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(o + 16 * k), _mm256_castsi256_si128(u[k]));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(o + 64 + 16 * k), _mm256_extracti128_si256(u[k], 1));
    }
  }
  const __m256i mask = _mm256_set1_epi32(0x03030303);
  for (; i + 32 <= n; i += 32) {
    __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + i / 4)));
    __m256i x = _mm256_or_si256(_mm256_or_si256(b, _mm256_slli_epi32(b, 6)),
                                _mm256_or_si256(_mm256_slli_epi32(b, 12), _mm256_slli_epi32(b, 18)));
    __m256i f = _mm256_and_si256(x, mask);  // byte k of u32 lane: field k of the packed byte
    bad = _mm256_or_si256(bad, _mm256_shuffle_epi8(badlut, f));
    store32(out + i, _mm256_shuffle_epi8(lut, f));
  }
  bool ok = _mm256_testz_si256(bad, bad);
  return unpack_any_scalar(p + i / 4, n - i, m, out + i) && ok;
}

bool unpack4(const uint8_t* p, size_t n, const PackMap& m, uint8_t* out) {
  const __m256i lut = bcast16(m.dec), badlut = bcast16(m.dec_bad);
  const __m256i mask = _mm256_set1_epi16(0x0F0F);
  __m256i bad = _mm256_setzero_si256();
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m256i b = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i / 2)));
    __m256i f = _mm256_and_si256(_mm256_or_si256(b, _mm256_slli_epi16(b, 4)), mask);  // lo nibble, hi nibble
    bad = _mm256_or_si256(bad, _mm256_shuffle_epi8(badlut, f));
    store32(out + i, _mm256_shuffle_epi8(lut, f));
  }
  bool ok = _mm256_testz_si256(bad, bad);
  return unpack_any_scalar(p + i / 2, n - i, m, out + i) && ok;
}

// 160 codes (32 bytes) per step, as 5 stores of 32 codes. A pshufb puts byte
// k / 5 in u16 lane k of two registers whose lanes are arranged so that one
// packus gives 32 codes in order (A: codes 0-7 | 16-23, B: 8-15 | 24-31); each
// store has its own two-window load, so no lane crossing is needed.
// Trit i = k % 5 of b is floor(3 * frac(b / 3^(i+1))), the fraction in 16-bit
// fixed point: frac = (b * ceil(2^16 / 3^(i+1))) mod 2^16, trit = (3 * frac) >> 16,
// exact for every b < 243 (the tests try them all).
struct Base3Tables {
  alignas(32) uint8_t idx[5][2][32];
  alignas(32) uint16_t mul[5][2][16];
  size_t lo_off[5], hi_off[5];
  Base3Tables() {
    static const uint16_t kFrac[5] = {21846, 7282, 2428, 810, 270};
    for (int k = 0; k < 5; ++k) {
      lo_off[k] = static_cast<size_t>(32 * k / 5);
      hi_off[k] = static_cast<size_t>((32 * k + 16) / 5);
      for (int r = 0; r < 2; ++r)
        for (int lane = 0; lane < 2; ++lane)
          for (int j = 0; j < 8; ++j) {
            int pos = 32 * k + 16 * lane + 8 * r + j, slot = 8 * lane + j;
            idx[k][r][2 * slot] = static_cast<uint8_t>(pos / 5 - static_cast<int>(lane ? hi_off[k] : lo_off[k]));
            idx[k][r][2 * slot + 1] = 0x80;  // zero high byte
            mul[k][r][slot] = kFrac[pos % 5];
          }
    }
  }
};
constexpr size_t kBase3Reach = 44;  // bytes one step reads: hi_off[4] + 16

// 32 bytes (read: kBase3Reach) -> 160 codes; mx collects the bytes read.
inline void unpack_base3_step(const Base3Tables& T, const uint8_t* b, int8_t* o, __m256i& mx) {
  const __m256i three = _mm256_set1_epi16(3), one = _mm256_set1_epi8(1);
  for (int k = 0; k < 5; ++k) {
    __m256i src = _mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(b + T.hi_off[k]),
                                      reinterpret_cast<const __m128i*>(b + T.lo_off[k]));
    mx = _mm256_max_epu8(mx, src);
    __m256i f0 = _mm256_mullo_epi16(_mm256_shuffle_epi8(src, load32(T.idx[k][0])), load32(T.mul[k][0]));
    __m256i f1 = _mm256_mullo_epi16(_mm256_shuffle_epi8(src, load32(T.idx[k][1])), load32(T.mul[k][1]));
    __m256i t = _mm256_packus_epi16(_mm256_mulhi_epu16(f0, three), _mm256_mulhi_epu16(f1, three));
    store32(o + 32 * k, _mm256_sub_epi8(t, one));  // trit - 1
  }
}

bool unpack_base3(const uint8_t* p, size_t n, int8_t* out) {
  static const Base3Tables T;  // plain bytes, built on first use (on the AVX2 path)
  const size_t nbytes = (n + 4) / 5;
  __m256i mx = _mm256_setzero_si256();
  size_t i = 0;
  for (; i + 160 <= n && i / 5 + kBase3Reach <= nbytes; i += 160) unpack_base3_step(T, p + i / 5, out + i, mx);
  while (i < n) {  // the rest through a zero-padded copy (0 is a valid byte)
    alignas(32) uint8_t buf[64] = {};
    alignas(32) int8_t obuf[160];
    size_t len = std::min<size_t>(160, n - i), nb = (len + 4) / 5;
    std::memcpy(buf, p + i / 5, nb);
    unpack_base3_step(T, buf, obuf, mx);
    std::memcpy(out + i, obuf, len);
    i += len;
  }
  return all_le(mx, _mm256_set1_epi8(static_cast<char>(242)));
}

// Any width W (3, 5, 6, 7, 8): the SWAR merge of pack_ops.h in four u64 lanes
// (8 codes -> W bytes each), then a pshufb joins each 128-bit lane's two W-byte
// pieces and two 16-byte stores write 4W bytes (the extra bytes they write are
// rewritten by the next step, so the loop stops while they are still in bounds).
template <int W>
inline __m256i join_shuffle() {  // bytes 0..W-1 and 8..8+W-1 of each lane -> 0..2W-1
  alignas(32) int8_t t[32];
  for (int lane = 0; lane < 2; ++lane)
    for (int j = 0; j < 16; ++j) t[16 * lane + j] = static_cast<int8_t>(j < W ? j : (j < 2 * W ? 8 + j - W : -1));
  return load32(t);
}
template <int W>
inline __m256i split_shuffle() {  // the inverse: bytes 0..2W-1 -> 0..W-1 and 8..8+W-1
  alignas(32) int8_t t[32];
  for (int lane = 0; lane < 2; ++lane)
    for (int j = 0; j < 16; ++j) t[16 * lane + j] = static_cast<int8_t>(j < W ? j : (j >= 8 && j < 8 + W ? j - 8 + W : -1));
  return load32(t);
}

template <int W>
bool pack_w(const uint8_t* q, size_t n, const PackMap& m, uint8_t* out) {
  const __m256i off = _mm256_set1_epi8(static_cast<char>(m.off)), xr = _mm256_set1_epi8(static_cast<char>(m.xr));
  const __m256i m8 = _mm256_set1_epi16(0x00FF), m16 = _mm256_set1_epi32(0x0000FFFF);
  const __m256i m32 = _mm256_set1_epi64x(0xFFFFFFFFLL), join = join_shuffle<W>();
  const size_t nbytes = (n * W + 7) / 8;
  __m256i mx = _mm256_setzero_si256();
  size_t i = 0;
  for (; i + 32 <= n && i / 8 * W + 2 * W + 16 <= nbytes; i += 32) {
    __m256i v = _mm256_add_epi8(load32(q + i), off);
    mx = _mm256_max_epu8(mx, v);
    __m256i f = _mm256_xor_si256(v, xr);
    f = _mm256_or_si256(_mm256_and_si256(f, m8), _mm256_srli_epi16(_mm256_andnot_si256(m8, f), 8 - W));
    f = _mm256_or_si256(_mm256_and_si256(f, m16), _mm256_srli_epi32(_mm256_andnot_si256(m16, f), 16 - 2 * W));
    f = _mm256_or_si256(_mm256_and_si256(f, m32), _mm256_srli_epi64(_mm256_andnot_si256(m32, f), 32 - 4 * W));
    f = _mm256_shuffle_epi8(f, join);
    uint8_t* o = out + i / 8 * W;
    _mm_storeu_si128(reinterpret_cast<__m128i*>(o), _mm256_castsi256_si128(f));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(o + 2 * W), _mm256_extracti128_si256(f, 1));
  }
  bool ok = all_le(mx, _mm256_set1_epi8(static_cast<char>(m.lim)));
  return pack_any_scalar(q + i, n - i, m, out + i / 8 * W) && ok;
}

template <int W>
bool unpack_w(const uint8_t* p, size_t n, const PackMap& m, uint8_t* out) {
  const __m256i off = _mm256_set1_epi8(static_cast<char>(m.off)), xr = _mm256_set1_epi8(static_cast<char>(m.xr));
  const __m256i m1 = _mm256_set1_epi16(static_cast<short>((1 << W) - 1));
  const __m256i m2 = _mm256_set1_epi32((1 << (2 * W)) - 1);
  const __m256i m4 = _mm256_set1_epi64x(static_cast<long long>((1ULL << (4 * W)) - 1));
  const __m256i split = split_shuffle<W>();
  const size_t nbytes = (n * W + 7) / 8;
  __m256i mx = _mm256_setzero_si256();
  size_t i = 0;
  for (; i + 32 <= n && i / 8 * W + 2 * W + 16 <= nbytes; i += 32) {
    const uint8_t* b = p + i / 8 * W;
    __m256i f = _mm256_shuffle_epi8(
        _mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(b + 2 * W), reinterpret_cast<const __m128i*>(b)), split);
    f = _mm256_or_si256(_mm256_and_si256(f, m4), _mm256_slli_epi64(_mm256_and_si256(_mm256_srli_epi64(f, 4 * W), m4), 32));
    f = _mm256_or_si256(_mm256_and_si256(f, m2), _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(f, 2 * W), m2), 16));
    f = _mm256_or_si256(_mm256_and_si256(f, m1), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(f, W), m1), 8));
    __m256i v = _mm256_xor_si256(f, xr);
    mx = _mm256_max_epu8(mx, v);
    store32(out + i, _mm256_sub_epi8(v, off));
  }
  bool ok = all_le(mx, _mm256_set1_epi8(static_cast<char>(m.lim)));
  return unpack_any_scalar(p + i / 8 * W, n - i, m, out + i) && ok;
}

bool pack_any(const uint8_t* q, size_t n, const PackMap& m, uint8_t* out) {
  switch (m.width) {
    case 3: return pack_w<3>(q, n, m, out);
    case 5: return pack_w<5>(q, n, m, out);
    case 6: return pack_w<6>(q, n, m, out);
    case 7: return pack_w<7>(q, n, m, out);
    case 8: return pack_w<8>(q, n, m, out);
    default: return pack_any_scalar(q, n, m, out);
  }
}
bool unpack_any(const uint8_t* p, size_t n, const PackMap& m, uint8_t* out) {
  switch (m.width) {
    case 3: return unpack_w<3>(p, n, m, out);
    case 5: return unpack_w<5>(p, n, m, out);
    case 6: return unpack_w<6>(p, n, m, out);
    case 7: return unpack_w<7>(p, n, m, out);
    case 8: return unpack_w<8>(p, n, m, out);
    default: return unpack_any_scalar(p, n, m, out);
  }
}

}  // namespace

const PackKernels pack_avx2 = {pack1,   pack2,   pack4,   pack_any,   unpack1,
                               unpack2, unpack4, unpack_any, pack_base3, unpack_base3};

}  // namespace lowbit
