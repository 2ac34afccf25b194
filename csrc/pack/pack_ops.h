// Scalar packing helpers, the plain definition of SPEC 6's layouts. Included by
// every ISA variant (internal linkage) so that vector tails use exactly these.
#pragma once
#include <cstddef>
#include <cstdint>

#include "pack/pack.h"

namespace lowbit {
namespace {

// Any width: a little-endian, LSB-first bit stream.
inline bool pack_any_scalar(const uint8_t* q, size_t n, const PackMap& m, uint8_t* out) {
  uint32_t acc = 0;
  int nbits = 0;
  uint8_t bad = 0;
  for (size_t i = 0; i < n; ++i) {
    bad |= m.enc_bad[q[i]];
    acc |= static_cast<uint32_t>(m.enc[q[i]]) << nbits;
    nbits += m.width;
    if (nbits >= 8) {
      *out++ = static_cast<uint8_t>(acc);
      acc >>= 8;
      nbits -= 8;
    }
  }
  if (nbits > 0) *out = static_cast<uint8_t>(acc);
  return bad == 0;
}

inline bool unpack_any_scalar(const uint8_t* p, size_t n, const PackMap& m, uint8_t* out) {
  const uint32_t mask = (1u << m.width) - 1;
  uint32_t acc = 0;
  int nbits = 0;
  uint8_t bad = 0;
  for (size_t i = 0; i < n; ++i) {
    if (nbits < m.width) {
      acc |= static_cast<uint32_t>(*p++) << nbits;
      nbits += 8;
    }
    uint32_t f = acc & mask;
    acc >>= m.width;
    nbits -= m.width;
    bad |= m.dec_bad[f];
    out[i] = m.dec[f];
  }
  return bad == 0;
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
