// Scalar packing helpers, the plain definition of SPEC 6's layouts. Included by
// every ISA variant (internal linkage) so that vector tails use exactly these.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "pack/pack.h"

namespace lowbit {
namespace {

// Any width, through the code tables: a little-endian, LSB-first bit stream.
// 8 codes fill `width` whole bytes, so the main loop moves 8 codes at a time.
inline bool pack_table_scalar(const uint8_t* q, size_t n, const PackMap& m, uint8_t* out) {
  const int w = m.width;
  const uint8_t *enc = m.enc, *enc_bad = m.enc_bad;
  uint8_t bad = 0;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t acc = 0;
    for (int k = 0; k < 8; ++k) {
      uint8_t c = q[i + k];
      bad |= enc_bad[c];
      acc |= static_cast<uint64_t>(enc[c]) << (k * w);
    }
    for (int b = 0; b < w; ++b) out[b] = static_cast<uint8_t>(acc >> (8 * b));
    out += w;
  }
  uint32_t acc = 0;
  int nbits = 0;
  for (; i < n; ++i) {
    bad |= enc_bad[q[i]];
    acc |= static_cast<uint32_t>(enc[q[i]]) << nbits;
    nbits += w;
    if (nbits >= 8) {
      *out++ = static_cast<uint8_t>(acc);
      acc >>= 8;
      nbits -= 8;
    }
  }
  if (nbits > 0) *out = static_cast<uint8_t>(acc);
  return bad == 0;
}

inline bool unpack_table_scalar(const uint8_t* p, size_t n, const PackMap& m, uint8_t* out) {
  const int w = m.width;
  const uint32_t mask = (1u << w) - 1;
  const uint8_t *dec = m.dec, *dec_bad = m.dec_bad;
  uint8_t bad = 0;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t acc = 0;
    for (int b = 0; b < w; ++b) acc |= static_cast<uint64_t>(p[b]) << (8 * b);
    p += w;
    for (int k = 0; k < 8; ++k) {
      uint32_t f = static_cast<uint32_t>(acc >> (k * w)) & mask;
      bad |= dec_bad[f];
      out[i + k] = dec[f];
    }
  }
  uint32_t acc = 0;
  int nbits = 0;
  for (; i < n; ++i) {
    if (nbits < w) {
      acc |= static_cast<uint32_t>(*p++) << nbits;
      nbits += 8;
    }
    uint32_t f = acc & mask;
    acc >>= w;
    nbits -= w;
    bad |= dec_bad[f];
    out[i] = dec[f];
  }
  return bad == 0;
}

// Fixed width W >= 2, arithmetic form of the map (v = q + off, valid iff
// v <= lim, field = v ^ xr), 8 codes <-> W bytes per step through a 64-bit word
// (SWAR: per-byte add/sub without carries, then fields merged pairwise).
constexpr uint64_t kLo7 = 0x7F7F7F7F7F7F7F7FULL, kHi1 = 0x8080808080808080ULL, kOnes = 0x0101010101010101ULL;

inline uint64_t swar_add(uint64_t x, uint64_t y) { return ((x & kLo7) + (y & kLo7)) ^ ((x ^ y) & kHi1); }
inline uint64_t swar_sub(uint64_t x, uint64_t y) { return ((x | kHi1) - (y & kLo7)) ^ ((x ^ ~y) & kHi1); }
// Little-endian loads and stores of up to 8 bytes (the layouts are little-endian).
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "pack_ops.h assumes a little-endian host");
inline uint64_t load_le(const uint8_t* p, int nbytes) {
  uint64_t v = 0;
  std::memcpy(&v, p, static_cast<size_t>(nbytes));
  return v;
}
inline void store_le(uint8_t* p, uint64_t v, int nbytes) { std::memcpy(p, &v, static_cast<size_t>(nbytes)); }
// Bytes of v that are not <= lim, as non-zero bits (lim is 2^W - 1, or 2 for ternary).
inline uint64_t swar_over(uint64_t v, uint64_t lim_mask, uint64_t tern) {
  return (v & lim_mask) | (v & (v >> 1) & tern);
}

template <int W>
inline bool pack_fixed(const uint8_t* q, size_t n, const PackMap& m, uint8_t* out) {
  const uint64_t off = kOnes * m.off, xr = kOnes * m.xr;
  // lim is 2^W - 1, or 2 for ternary (then the field 3 is out)
  const uint64_t lim_mask = ~(kOnes * (m.lim == 2 ? 3 : m.lim)), tern = m.lim == 2 ? kOnes : 0;
  uint64_t over = 0;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t v = swar_add(load_le(q + i, 8), off);
    over |= swar_over(v, lim_mask, tern);
    uint64_t f = v ^ xr;
    f = (f & 0x00FF00FF00FF00FFULL) | ((f & 0xFF00FF00FF00FF00ULL) >> (8 - W));
    f = (f & 0x0000FFFF0000FFFFULL) | ((f & 0xFFFF0000FFFF0000ULL) >> (16 - 2 * W));
    f = (f & 0x00000000FFFFFFFFULL) | ((f & 0xFFFFFFFF00000000ULL) >> (32 - 4 * W));
    store_le(out + i / 8 * W, f, W);
  }
  return pack_table_scalar(q + i, n - i, m, out + i / 8 * W) && over == 0;
}

template <int W>
inline bool unpack_fixed(const uint8_t* p, size_t n, const PackMap& m, uint8_t* out) {
  const uint64_t off = kOnes * m.off, xr = kOnes * m.xr;
  const uint64_t m1 = 0x0001000100010001ULL * ((1u << W) - 1);        // low field of each u16
  const uint64_t m2 = 0x0000000100000001ULL * ((1u << (2 * W)) - 1);  // low 2 fields of each u32
  const uint64_t m4 = (1ULL << (4 * W)) - 1;                           // low 4 fields
  const uint64_t lim_mask = ~(kOnes * (m.lim == 2 ? 3 : m.lim)), tern = m.lim == 2 ? kOnes : 0;
  const uint64_t wmask = W == 8 ? ~0ULL : (1ULL << (8 * W)) - 1;
  const size_t nbytes = (n * W + 7) / 8;
  uint64_t over = 0;
  size_t i = 0;
  for (; i + 8 <= n && i / 8 * W + 8 <= nbytes; i += 8) {  // an 8-byte load, W bytes used
    uint64_t f = load_le(p + i / 8 * W, 8) & wmask;
    f = (f & m4) | ((f >> (4 * W)) & m4) << 32;
    f = (f & m2) | ((f >> (2 * W)) & m2) << 16;
    f = (f & m1) | ((f >> W) & m1) << 8;
    uint64_t v = f ^ xr;
    over |= swar_over(v, lim_mask, tern);
    store_le(out + i, swar_sub(v, off), 8);
  }
  return unpack_table_scalar(p + i / 8 * W, n - i, m, out + i) && over == 0;
}

inline bool pack_any_scalar(const uint8_t* q, size_t n, const PackMap& m, uint8_t* out) {
  switch (m.width) {
    case 2: return pack_fixed<2>(q, n, m, out);
    case 3: return pack_fixed<3>(q, n, m, out);
    case 4: return pack_fixed<4>(q, n, m, out);
    case 5: return pack_fixed<5>(q, n, m, out);
    case 6: return pack_fixed<6>(q, n, m, out);
    case 7: return pack_fixed<7>(q, n, m, out);
    case 8: return pack_fixed<8>(q, n, m, out);
    default: return pack_table_scalar(q, n, m, out);
  }
}

inline bool unpack_any_scalar(const uint8_t* p, size_t n, const PackMap& m, uint8_t* out) {
  switch (m.width) {
    case 2: return unpack_fixed<2>(p, n, m, out);
    case 3: return unpack_fixed<3>(p, n, m, out);
    case 4: return unpack_fixed<4>(p, n, m, out);
    case 5: return unpack_fixed<5>(p, n, m, out);
    case 6: return unpack_fixed<6>(p, n, m, out);
    case 7: return unpack_fixed<7>(p, n, m, out);
    case 8: return unpack_fixed<8>(p, n, m, out);
    default: return unpack_table_scalar(p, n, m, out);
  }
}

inline bool pack_base3_scalar(const int8_t* q, size_t n, uint8_t* out) {
  bool ok = true;
  for (size_t i = 0; i < n; i += 5) {
    size_t len = n - i < 5 ? n - i : 5;
    unsigned byte = 0, pw = 1;
    for (size_t k = 0; k < len; ++k, pw *= 3) {
      int v = q[i + k];
      ok &= v >= -1 && v <= 1;
      byte += static_cast<unsigned>(v + 1) * pw;
    }
    *out++ = static_cast<uint8_t>(byte);
  }
  return ok;
}

inline bool unpack_base3_scalar(const uint8_t* p, size_t n, int8_t* out) {
  bool ok = true;
  for (size_t i = 0; i < n; i += 5) {
    unsigned b = *p++;
    ok &= b < 243;
    size_t len = n - i < 5 ? n - i : 5;
    for (size_t k = 0; k < len; ++k, b /= 3) out[i + k] = static_cast<int8_t>(static_cast<int>(b % 3) - 1);
  }
  return ok;
}

}  // namespace
}  // namespace lowbit
