// Scalar definitions of the GGUF block formats: ggml's reference C code
// (ggml-quants.c, quantize_row_*_ref / dequantize_row_*), one block at a time.
// Included by every ISA variant with internal linkage; the SIMD variants call
// these for the blocks they leave to scalar code (degenerate scales, zero signs).
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "gguf/gguf.h"

namespace lowbit {
namespace {

inline uint32_t f32_bits(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  return u;
}
inline float f32_from_bits(uint32_t u) {
  float v;
  std::memcpy(&v, &u, 4);
  return v;
}

// GGML_FP32_TO_FP16: IEEE binary16, round to nearest even, overflow to +-Inf.
inline uint16_t fp32_to_fp16(float f) {
  uint32_t x = f32_bits(f);
  uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));  // NaN
  if (ax >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 65520: Inf
  if (ax < 0x38800000u) {  // below 2^-14: a subnormal half (or zero)
    if (ax < 0x33000000u) return static_cast<uint16_t>(sign);  // <= 2^-25: rounds to 0
    uint32_t e = ax >> 23, m = (ax & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126 - e;  // 14..24: value = m * 2^(e-150), half unit = 2^-24
    uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    q += (rem > half) || (rem == half && (q & 1));
    return static_cast<uint16_t>(sign | q);
  }
  uint32_t r = ax - 0x38000000u;  // rebias exponent 127 -> 15 (in the high bits)
  uint32_t q = r >> 13, rem = r & 0x1fffu;
  q += (rem > 0x1000u) || (rem == 0x1000u && (q & 1));
  return static_cast<uint16_t>(sign | q);
}

inline float fp16_to_fp32(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0x1f) return f32_from_bits(sign | 0x7f800000u | (m << 13));
  if (e == 0) {
    float v = static_cast<float>(m) * (1.0f / 16777216.0f);  // m * 2^-24, exact
    return sign ? -v : v;
  }
  return f32_from_bits(sign | ((e + 112) << 23) | (m << 13));
}

inline void store_fp16(uint8_t* p, float f) {
  uint16_t h = fp32_to_fp16(f);
  p[0] = static_cast<uint8_t>(h);
  p[1] = static_cast<uint8_t>(h >> 8);
}
inline float load_fp16(const uint8_t* p) {
  return fp16_to_fp32(static_cast<uint16_t>(p[0] | (p[1] << 8)));
}

inline bool finite_f32(float v) { return (f32_bits(v) & 0x7fffffffu) < 0x7f800000u; }

// C's (int) of a float as x86 does it (cvttss2si): truncation, and INT_MIN for
// NaN, Inf and out-of-range values. ggml's casts of +-Inf/NaN products (blocks
// whose 1/d overflows) land here, and gguf-py gets the same bytes on x86.
inline int32_t to_int_x86(float v) {
  return std::fabs(v) < 2147483648.0f ? static_cast<int32_t>(v) : INT32_MIN;
}

// roundf (ties away from zero) for a finite product, then C's int conversion;
// a non-finite product gives 0, as to_int_x86 + (int8_t) would.
inline int32_t roundf_int(float v) {
  if (!finite_f32(v)) return 0;
  if (!(std::fabs(v) < 2147483648.0f)) return INT32_MIN;  // roundf(v) = v, out of int range
  const int32_t t = static_cast<int32_t>(v);              // trunc; exact back in float
  const float frac = v - static_cast<float>(t);            // exact
  return frac >= 0.5f ? t + 1 : (frac <= -0.5f ? t - 1 : t);
}

// ggml's `id = d ? 1.0f/d : 0.0f`.
inline float inverse(float d) { return d != 0.0f ? 1.0f / d : 0.0f; }

// Max |x| over n values; false if any is NaN or Inf.
inline bool absmax_block(const float* x, int n, float* amax) {
  uint32_t m = 0;
  for (int j = 0; j < n; ++j) {
    uint32_t a = f32_bits(x[j]) & 0x7fffffffu;
    m = a > m ? a : m;
  }
  *amax = f32_from_bits(m);
  return m < 0x7f800000u;
}

// ---- quantize one block ------------------------------------------------------

inline bool quantize_block_q8_0(const float* x, uint8_t* out) {
  float amax;
  if (!absmax_block(x, kQK, &amax)) return false;
  const float d = amax / 127.0f, id = inverse(d);
  BlockQ8_0* y = reinterpret_cast<BlockQ8_0*>(out);
  store_fp16(y->d, d);
  for (int j = 0; j < kQK; ++j) y->qs[j] = static_cast<int8_t>(roundf_int(x[j] * id));
  return true;
}

// Q4_0 / Q5_0: d = max / -div where max is the first value of largest magnitude;
// q = MIN(top, (int8_t)(x * id + bias)).
inline bool sym_codes(const float* x, float div, float bias, int top, float* d_out, uint8_t* q) {
  float amax = 0.0f, max = 0.0f;
  for (int j = 0; j < kQK; ++j) {
    const float v = x[j];
    if (!finite_f32(v)) return false;
    if (amax < std::fabs(v)) {
      amax = std::fabs(v);
      max = v;
    }
  }
  if (amax == 0.0f) max = x[0];  // all zeros: argmax is index 0 (keeps the sign of x[0])
  const float d = max / -div, id = inverse(d);
  for (int j = 0; j < kQK; ++j) {
    int32_t v = static_cast<int8_t>(to_int_x86(x[j] * id + bias));
    q[j] = static_cast<uint8_t>(v < top ? v : top);
  }
  *d_out = d;
  return true;
}

// Block min and max; a zero extreme is -0.0 (min) / +0.0 (max) when the block
// holds such a zero, so the result does not depend on the order of comparisons.
inline void min_max_block(const float* x, float* mn_out, float* mx_out) {
  float mn = x[0], mx = x[0];
  bool neg0 = false, pos0 = false;
  for (int j = 0; j < kQK; ++j) {
    const float v = x[j];
    mn = v < mn ? v : mn;
    mx = v > mx ? v : mx;
    neg0 |= f32_bits(v) == 0x80000000u;
    pos0 |= f32_bits(v) == 0u;
  }
  if (mn == 0.0f) mn = neg0 ? -0.0f : 0.0f;
  if (mx == 0.0f) mx = pos0 ? 0.0f : -0.0f;
  *mn_out = mn;
  *mx_out = mx;
}

// Q4_1 / Q5_1: d = (max - min) / div, q = MIN(top, (int8_t)((x - min) * id + 0.5f)).
inline bool asym_codes(const float* x, float div, int top, float* d_out, float* m_out, uint8_t* q) {
  float amax;
  if (!absmax_block(x, kQK, &amax)) return false;
  float mn, mx;
  min_max_block(x, &mn, &mx);
  const float d = (mx - mn) / div, id = inverse(d);
  for (int j = 0; j < kQK; ++j) {
    int32_t v = static_cast<int8_t>(to_int_x86((x[j] - mn) * id + 0.5f));
    q[j] = static_cast<uint8_t>(v < top ? v : top);
  }
  *d_out = d;
  *m_out = mn;
  return true;
}

inline void pack_nibbles(const uint8_t* q, uint8_t* qs) {
  for (int j = 0; j < kQK / 2; ++j) qs[j] = static_cast<uint8_t>((q[j] & 0x0F) | ((q[j + kQK / 2] & 0x0F) << 4));
}
inline void pack_high_bits(const uint8_t* q, uint8_t* qh) {
  uint32_t h = 0;
  for (int j = 0; j < kQK; ++j) h |= static_cast<uint32_t>((q[j] >> 4) & 1) << j;
  for (int k = 0; k < 4; ++k) qh[k] = static_cast<uint8_t>(h >> (8 * k));
}

inline bool quantize_block_q4_0(const float* x, uint8_t* out) {
  float d;
  uint8_t q[kQK];
  if (!sym_codes(x, 8.0f, 8.5f, 15, &d, q)) return false;
  BlockQ4_0* y = reinterpret_cast<BlockQ4_0*>(out);
  store_fp16(y->d, d);
  pack_nibbles(q, y->qs);
  return true;
}

inline bool quantize_block_q5_0(const float* x, uint8_t* out) {
  float d;
  uint8_t q[kQK];
  if (!sym_codes(x, 16.0f, 16.5f, 31, &d, q)) return false;
  BlockQ5_0* y = reinterpret_cast<BlockQ5_0*>(out);
  store_fp16(y->d, d);
  pack_high_bits(q, y->qh);
  pack_nibbles(q, y->qs);
  return true;
}

inline bool quantize_block_q4_1(const float* x, uint8_t* out) {
  float d, m;
  uint8_t q[kQK];
  if (!asym_codes(x, 15.0f, 15, &d, &m, q)) return false;
  BlockQ4_1* y = reinterpret_cast<BlockQ4_1*>(out);
  store_fp16(y->d, d);
  store_fp16(y->m, m);
  pack_nibbles(q, y->qs);
  return true;
}

inline bool quantize_block_q5_1(const float* x, uint8_t* out) {
  float d, m;
  uint8_t q[kQK];
  if (!asym_codes(x, 31.0f, 31, &d, &m, q)) return false;
  BlockQ5_1* y = reinterpret_cast<BlockQ5_1*>(out);
  store_fp16(y->d, d);
  store_fp16(y->m, m);
  pack_high_bits(q, y->qh);
  pack_nibbles(q, y->qs);
  return true;
}

// TQ1_0 / TQ2_0: d = max|x|, trit t = roundf(x * id) + 1 in {0, 1, 2}.
inline bool ternary_codes(const float* x, float* d_out, uint8_t* t) {
  float amax;
  if (!absmax_block(x, kQK_K, &amax)) return false;
  const float id = inverse(amax);
  for (int j = 0; j < kQK_K; ++j) t[j] = static_cast<uint8_t>(roundf_int(x[j] * id) + 1);
  *d_out = amax;
  return true;
}

// 5 (or 4, then x3) trits, first one most significant, as a fixed-point fraction
// of 256: ceil(v * 256 / 243), the byte TQ1_0 stores.
inline uint8_t tq1_byte(uint32_t v) { return static_cast<uint8_t>((v * 256 + 242) / 243); }

inline bool quantize_block_tq1_0(const float* x, uint8_t* out) {
  float d;
  uint8_t t[kQK_K];
  if (!ternary_codes(x, &d, t)) return false;
  BlockTQ1_0* y = reinterpret_cast<BlockTQ1_0*>(out);
  for (int m = 0; m < 32; ++m) {  // values 0..159: byte m holds m, m+32, ..., m+128
    uint32_t v = 0;
    for (int n = 0; n < 5; ++n) v = v * 3 + t[m + 32 * n];
    y->qs[m] = tq1_byte(v);
  }
  for (int m = 0; m < 16; ++m) {  // values 160..239: byte 32+m holds 160+m, 176+m, ...
    uint32_t v = 0;
    for (int n = 0; n < 5; ++n) v = v * 3 + t[160 + m + 16 * n];
    y->qs[32 + m] = tq1_byte(v);
  }
  for (int j = 0; j < 4; ++j) {  // values 240..255: qh byte j holds 240+j, 244+j, 248+j, 252+j
    uint32_t v = 0;
    for (int n = 0; n < 4; ++n) v = v * 3 + t[240 + j + 4 * n];
    y->qh[j] = tq1_byte(v * 3);
  }
  store_fp16(y->d, d);
  return true;
}

inline bool quantize_block_tq2_0(const float* x, uint8_t* out) {
  float d;
  uint8_t t[kQK_K];
  if (!ternary_codes(x, &d, t)) return false;
  BlockTQ2_0* y = reinterpret_cast<BlockTQ2_0*>(out);
  for (int g = 0; g < 2; ++g)  // byte 32g+m holds values 128g+m, +32, +64, +96 at bits 0, 2, 4, 6
    for (int m = 0; m < 32; ++m) {
      const uint8_t* s = t + 128 * g + m;
      y->qs[32 * g + m] = static_cast<uint8_t>(s[0] | (s[32] << 2) | (s[64] << 4) | (s[96] << 6));
    }
  store_fp16(y->d, d);
  return true;
}

// ---- dequantize one block ------------------------------------------------------

inline void unpack_nibbles(const uint8_t* qs, int32_t* q) {
  for (int j = 0; j < kQK / 2; ++j) {
    q[j] = qs[j] & 0x0F;
    q[j + kQK / 2] = qs[j] >> 4;
  }
}
inline void add_high_bits(const uint8_t* qh, int32_t* q) {
  uint32_t h = static_cast<uint32_t>(qh[0]) | (static_cast<uint32_t>(qh[1]) << 8) |
               (static_cast<uint32_t>(qh[2]) << 16) | (static_cast<uint32_t>(qh[3]) << 24);
  for (int j = 0; j < kQK; ++j) q[j] |= static_cast<int32_t>((h >> j) & 1) << 4;
}

inline void dequantize_block_q8_0(const uint8_t* in, float* y) {
  const BlockQ8_0* b = reinterpret_cast<const BlockQ8_0*>(in);
  const float d = load_fp16(b->d);
  for (int j = 0; j < kQK; ++j) y[j] = static_cast<float>(b->qs[j]) * d;
}

inline void dequantize_block_q4_0(const uint8_t* in, float* y) {
  const BlockQ4_0* b = reinterpret_cast<const BlockQ4_0*>(in);
  const float d = load_fp16(b->d);
  int32_t q[kQK];
  unpack_nibbles(b->qs, q);
  for (int j = 0; j < kQK; ++j) y[j] = d * static_cast<float>(q[j] - 8);
}

inline void dequantize_block_q4_1(const uint8_t* in, float* y) {
  const BlockQ4_1* b = reinterpret_cast<const BlockQ4_1*>(in);
  const float d = load_fp16(b->d), m = load_fp16(b->m);
  int32_t q[kQK];
  unpack_nibbles(b->qs, q);
  for (int j = 0; j < kQK; ++j) y[j] = d * static_cast<float>(q[j]) + m;
}

inline void dequantize_block_q5_0(const uint8_t* in, float* y) {
  const BlockQ5_0* b = reinterpret_cast<const BlockQ5_0*>(in);
  const float d = load_fp16(b->d);
  int32_t q[kQK];
  unpack_nibbles(b->qs, q);
  add_high_bits(b->qh, q);
  for (int j = 0; j < kQK; ++j) y[j] = d * static_cast<float>(q[j] - 16);
}

inline void dequantize_block_q5_1(const uint8_t* in, float* y) {
  const BlockQ5_1* b = reinterpret_cast<const BlockQ5_1*>(in);
  const float d = load_fp16(b->d), m = load_fp16(b->m);
  int32_t q[kQK];
  unpack_nibbles(b->qs, q);
  add_high_bits(b->qh, q);
  for (int j = 0; j < kQK; ++j) y[j] = d * static_cast<float>(q[j]) + m;
}

// The n-th trit (most significant first) of a TQ1_0 byte: (uint8_t)(b * 3^n) * 3 >> 8.
inline int32_t tq1_trit(uint8_t b, int n) {
  static constexpr uint8_t kPow3[5] = {1, 3, 9, 27, 81};
  const uint8_t v = static_cast<uint8_t>(b * kPow3[n]);
  return (static_cast<int32_t>(v) * 3) >> 8;
}

inline void dequantize_block_tq1_0(const uint8_t* in, float* y) {
  const BlockTQ1_0* b = reinterpret_cast<const BlockTQ1_0*>(in);
  const float d = load_fp16(b->d);
  for (int n = 0; n < 5; ++n)
    for (int m = 0; m < 32; ++m) y[32 * n + m] = d * static_cast<float>(tq1_trit(b->qs[m], n) - 1);
  for (int n = 0; n < 5; ++n)
    for (int m = 0; m < 16; ++m) y[160 + 16 * n + m] = d * static_cast<float>(tq1_trit(b->qs[32 + m], n) - 1);
  for (int n = 0; n < 4; ++n)
    for (int j = 0; j < 4; ++j) y[240 + 4 * n + j] = d * static_cast<float>(tq1_trit(b->qh[j], n) - 1);
}

inline void dequantize_block_tq2_0(const uint8_t* in, float* y) {
  const BlockTQ2_0* b = reinterpret_cast<const BlockTQ2_0*>(in);
  const float d = load_fp16(b->d);
  for (int g = 0; g < 2; ++g)
    for (int l = 0; l < 4; ++l)
      for (int m = 0; m < 32; ++m)
        y[128 * g + 32 * l + m] = d * static_cast<float>(((b->qs[32 * g + m] >> (2 * l)) & 3) - 1);
}

}  // namespace
}  // namespace lowbit
