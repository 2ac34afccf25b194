// GGUF block formats, aarch64 Advanced SIMD variant. Vectorized: Q8_0 and TQ2_0
// quantization, the codes of Q4_0/Q4_1/Q5_0/Q5_1 (their argmax and min/max searches stay
// gguf_ops.h's scalar loops, whose order defines ggml's result), and the dequantization
// of every format but TQ1_0; TQ1_0 is gguf_ops.h's scalar block functions.
// ggml's (int) casts follow x86 (cvttss2si: INT32_MIN for NaN, Inf, out of range): a
// truncating fcvtzs masked to 0 where |v| >= 2^31 keeps the same low byte.
// Rounding: fcvtas (vcvtaq_s32_f32) rounds half away from zero, ggml's roundf; the
// half-precision scales go through gguf_ops.h's conversions; no fused multiply-add.
#include <arm_neon.h>

#include "gguf/gguf.h"
#include "gguf/gguf_iq.h"
#include "gguf/gguf_kquants.h"
#include "gguf/gguf_search.h"
#include "gguf/gguf_ops.h"

namespace lowbit {
namespace {

template <size_t kBlock, size_t kBytes, bool (*kFn)(const float*, uint8_t*)>
bool quantize_blocks(const float* x, size_t nblocks, const float*, uint8_t* out) {
  bool ok = true;
  for (size_t i = 0; i < nblocks; ++i) ok &= kFn(x + i * kBlock, out + i * kBytes);
  return ok;
}

template <size_t kBlock, size_t kBytes, void (*kFn)(const uint8_t*, float*)>
void dequantize_blocks(const uint8_t* in, size_t nblocks, float* out) {
  for (size_t i = 0; i < nblocks; ++i) kFn(in + i * kBytes, out + i * kBlock);
}

// roundf_int then (int8_t): ties away from zero; a product that is not finite or
// not below 2^31 in magnitude gives the byte 0 (as 0 or INT32_MIN do in the scalar code).
inline int32x4_t round_q8(float32x4_t v) {
  uint32x4_t in_range = vcaltq_f32(v, vdupq_n_f32(2147483648.0f));  // |v| < 2^31, false for NaN
  return vandq_s32(vcvtaq_s32_f32(v), vreinterpretq_s32_u32(in_range));
}

bool quantize_block_q8_0_neon(const float* x, uint8_t* out) {
  const uint32x4_t mask = vdupq_n_u32(0x7fffffffu);
  float32x4_t v[8];
  uint32x4_t m = vdupq_n_u32(0);
  for (int k = 0; k < 8; ++k) {
    v[k] = vld1q_f32(x + 4 * k);
    m = vmaxq_u32(m, vandq_u32(vreinterpretq_u32_f32(v[k]), mask));
  }
  const uint32_t mb = vmaxvq_u32(m);
  if (mb >= 0x7f800000u) return false;
  const float d = f32_from_bits(mb) / 127.0f, id = inverse(d);
  BlockQ8_0* y = reinterpret_cast<BlockQ8_0*>(out);
  store_fp16(y->d, d);
  const float32x4_t vid = vdupq_n_f32(id);
  for (int h = 0; h < 2; ++h) {
    int32x4_t q0 = round_q8(vmulq_f32(v[4 * h], vid)), q1 = round_q8(vmulq_f32(v[4 * h + 1], vid));
    int32x4_t q2 = round_q8(vmulq_f32(v[4 * h + 2], vid)), q3 = round_q8(vmulq_f32(v[4 * h + 3], vid));
    int8x16_t b = vcombine_s8(vmovn_s16(vcombine_s16(vmovn_s32(q0), vmovn_s32(q1))),
                              vmovn_s16(vcombine_s16(vmovn_s32(q2), vmovn_s32(q3))));
    vst1q_s8(y->qs + 16 * h, b);
  }
  return true;
}

// (int8_t) to_int_x86(v) for 4 lanes: truncation; NaN, Inf and |v| >= 2^31 give INT32_MIN,
// whose low byte (0) is what the caller keeps, so they are zeroed here.
inline int32x4_t trunc_x86(float32x4_t v) {
  uint32x4_t in_range = vcaltq_f32(v, vdupq_n_f32(2147483648.0f));
  return vandq_s32(vcvtq_s32_f32(v), vreinterpretq_s32_u32(in_range));
}
inline int8x16_t low_bytes(int32x4_t a, int32x4_t b, int32x4_t c, int32x4_t d) {
  return vcombine_s8(vmovn_s16(vcombine_s16(vmovn_s32(a), vmovn_s32(b))),
                     vmovn_s16(vcombine_s16(vmovn_s32(c), vmovn_s32(d))));
}

// q[j] = MIN(top, (int8_t) to_int_x86((x[j] - sub) * id + bias)), j < 32; `sub` only when kSub
// (the products and sums rounded one at a time, as the scalar code).
template <bool kSub>
inline void codes32(const float* x, float sub, float id, float bias, int top, uint8_t* q) {
  const float32x4_t vsub = vdupq_n_f32(sub), vid = vdupq_n_f32(id), vb = vdupq_n_f32(bias);
  for (int h = 0; h < 2; ++h) {
    int32x4_t c[4];
    for (int k = 0; k < 4; ++k) {
      float32x4_t v = vld1q_f32(x + 16 * h + 4 * k);
      if (kSub) v = vsubq_f32(v, vsub);
      c[k] = trunc_x86(vaddq_f32(vmulq_f32(v, vid), vb));
    }
    int8x16_t b = vminq_s8(low_bytes(c[0], c[1], c[2], c[3]), vdupq_n_s8(static_cast<int8_t>(top)));
    vst1q_u8(q + 16 * h, vreinterpretq_u8_s8(b));
  }
}

// Q4_0 / Q5_0: the argmax search of sym_codes (scalar: its order defines the result), codes in vectors.
template <int kDiv, int kTop>
inline bool sym_codes_neon(const float* x, float* d_out, uint8_t* q) {
  float amax = 0.0f, max = 0.0f;
  for (int j = 0; j < kQK; ++j) {
    const float v = x[j];
    if (!finite_f32(v)) return false;
    if (amax < std::fabs(v)) {
      amax = std::fabs(v);
      max = v;
    }
  }
  if (amax == 0.0f) max = x[0];
  const float d = max / -static_cast<float>(kDiv), id = inverse(d);
  codes32<false>(x, 0.0f, id, static_cast<float>(kDiv) + 0.5f, kTop, q);
  *d_out = d;
  return true;
}

template <int kDiv, int kTop>
inline bool asym_codes_neon(const float* x, float* d_out, float* m_out, uint8_t* q) {
  float amax;
  if (!absmax_block(x, kQK, &amax)) return false;
  float mn, mx;
  min_max_block(x, &mn, &mx);
  const float d = (mx - mn) / static_cast<float>(kDiv), id = inverse(d);
  codes32<true>(x, mn, id, 0.5f, kTop, q);
  *d_out = d;
  *m_out = mn;
  return true;
}

bool quantize_block_q4_0_neon(const float* x, uint8_t* out) {
  float d;
  uint8_t q[kQK];
  if (!sym_codes_neon<8, 15>(x, &d, q)) return false;
  BlockQ4_0* y = reinterpret_cast<BlockQ4_0*>(out);
  store_fp16(y->d, d);
  pack_nibbles(q, y->qs);
  return true;
}
bool quantize_block_q5_0_neon(const float* x, uint8_t* out) {
  float d;
  uint8_t q[kQK];
  if (!sym_codes_neon<16, 31>(x, &d, q)) return false;
  BlockQ5_0* y = reinterpret_cast<BlockQ5_0*>(out);
  store_fp16(y->d, d);
  pack_high_bits(q, y->qh);
  pack_nibbles(q, y->qs);
  return true;
}
bool quantize_block_q4_1_neon(const float* x, uint8_t* out) {
  float d, m;
  uint8_t q[kQK];
  if (!asym_codes_neon<15, 15>(x, &d, &m, q)) return false;
  BlockQ4_1* y = reinterpret_cast<BlockQ4_1*>(out);
  store_fp16(y->d, d);
  store_fp16(y->m, m);
  pack_nibbles(q, y->qs);
  return true;
}
bool quantize_block_q5_1_neon(const float* x, uint8_t* out) {
  float d, m;
  uint8_t q[kQK];
  if (!asym_codes_neon<31, 31>(x, &d, &m, q)) return false;
  BlockQ5_1* y = reinterpret_cast<BlockQ5_1*>(out);
  store_fp16(y->d, d);
  store_fp16(y->m, m);
  pack_high_bits(q, y->qh);
  pack_nibbles(q, y->qs);
  return true;
}

// TQ2_0: trits t = roundf_int(x * id) + 1 (a non-finite product gives t = 1, as the
// scalar 0 + 1), four per byte at bits 0, 2, 4, 6 (values 128g + m + 32i).
inline uint8x16_t trits16(const float* x, float32x4_t vid) {
  int32x4_t c[4];
  for (int k = 0; k < 4; ++k) c[k] = round_q8(vmulq_f32(vld1q_f32(x + 4 * k), vid));
  return vreinterpretq_u8_s8(vaddq_s8(low_bytes(c[0], c[1], c[2], c[3]), vdupq_n_s8(1)));
}

bool quantize_block_tq2_0_neon(const float* x, uint8_t* out) {
  const uint32x4_t mask = vdupq_n_u32(0x7fffffffu);
  uint32x4_t m = vdupq_n_u32(0);
  for (int k = 0; k < kQK_K / 4; ++k) m = vmaxq_u32(m, vandq_u32(vld1q_u32(reinterpret_cast<const uint32_t*>(x) + 4 * k), mask));
  const uint32_t mb = vmaxvq_u32(m);
  if (mb >= 0x7f800000u) return false;
  const float amax = f32_from_bits(mb);
  const float32x4_t vid = vdupq_n_f32(inverse(amax));
  BlockTQ2_0* y = reinterpret_cast<BlockTQ2_0*>(out);
  for (int g = 0; g < 2; ++g)
    for (int h = 0; h < 2; ++h) {
      const float* s = x + 128 * g + 16 * h;
      uint8x16_t b = vsliq_n_u8(vsliq_n_u8(vsliq_n_u8(trits16(s, vid), trits16(s + 32, vid), 2), trits16(s + 64, vid), 4),
                                trits16(s + 96, vid), 6);
      vst1q_u8(y->qs + 32 * g + 16 * h, b);
    }
  store_fp16(y->d, amax);
  return true;
}

// 16 int16 codes -> y[0..16) = d * float(q) (+ m when kAdd)
template <bool kAdd>
inline void store16(int16x8_t lo, int16x8_t hi, float32x4_t d, float32x4_t m, float* y) {
  int32x4_t q[4] = {vmovl_s16(vget_low_s16(lo)), vmovl_high_s16(lo), vmovl_s16(vget_low_s16(hi)), vmovl_high_s16(hi)};
  for (int k = 0; k < 4; ++k) {
    float32x4_t f = vmulq_f32(d, vcvtq_f32_s32(q[k]));
    vst1q_f32(y + 4 * k, kAdd ? vaddq_f32(f, m) : f);
  }
}

void dequantize_block_q8_0_neon(const uint8_t* in, float* y) {
  const BlockQ8_0* b = reinterpret_cast<const BlockQ8_0*>(in);
  const float32x4_t d = vdupq_n_f32(load_fp16(b->d));
  for (int h = 0; h < 2; ++h) {
    int8x16_t q = vld1q_s8(b->qs + 16 * h);
    int16x8_t lo = vmovl_s8(vget_low_s8(q)), hi = vmovl_high_s8(q);
    // float(q) * d: the same product as d * float(q)
    store16<false>(lo, hi, d, d, y + 16 * h);
  }
}

// Nibbles: q[j] = qs[j] & 15, q[j + 16] = qs[j] >> 4, as int16 vectors (j < 16).
inline void nibbles(const uint8_t* qs, uint8x16_t& lo, uint8x16_t& hi) {
  uint8x16_t b = vld1q_u8(qs);
  lo = vandq_u8(b, vdupq_n_u8(0x0F));
  hi = vshrq_n_u8(b, 4);
}
// 16 flags (bit j of the 16 bits at h) as 16 in each byte
inline uint8x16_t high16(uint16_t h) {
  static const uint8_t kBit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
  uint8x16_t x = vcombine_u8(vdup_n_u8(static_cast<uint8_t>(h)), vdup_n_u8(static_cast<uint8_t>(h >> 8)));
  return vandq_u8(vtstq_u8(x, vld1q_u8(kBit)), vdupq_n_u8(16));
}

template <int kOffset, bool kHigh, bool kMin>
inline void dequantize_q45(const uint8_t* d16, const uint8_t* m16, const uint8_t* qh, const uint8_t* qs, float* y) {
  const float32x4_t d = vdupq_n_f32(load_fp16(d16));
  const float32x4_t m = kMin ? vdupq_n_f32(load_fp16(m16)) : d;
  uint8x16_t lo, hi;
  nibbles(qs, lo, hi);
  if (kHigh) {
    uint32_t h = static_cast<uint32_t>(qh[0]) | (static_cast<uint32_t>(qh[1]) << 8) |
                 (static_cast<uint32_t>(qh[2]) << 16) | (static_cast<uint32_t>(qh[3]) << 24);
    lo = vorrq_u8(lo, high16(static_cast<uint16_t>(h)));
    hi = vorrq_u8(hi, high16(static_cast<uint16_t>(h >> 16)));
  }
  const int16x8_t off = vdupq_n_s16(kOffset);
  for (int half = 0; half < 2; ++half) {
    uint8x16_t q = half ? hi : lo;
    int16x8_t a = vsubq_s16(vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(q))), off);
    int16x8_t b = vsubq_s16(vreinterpretq_s16_u16(vmovl_high_u8(q)), off);
    store16<kMin>(a, b, d, m, y + 16 * half);
  }
}

void dequantize_block_q4_0_neon(const uint8_t* in, float* y) {
  const BlockQ4_0* b = reinterpret_cast<const BlockQ4_0*>(in);
  dequantize_q45<8, false, false>(b->d, nullptr, nullptr, b->qs, y);
}
void dequantize_block_q4_1_neon(const uint8_t* in, float* y) {
  const BlockQ4_1* b = reinterpret_cast<const BlockQ4_1*>(in);
  dequantize_q45<0, false, true>(b->d, b->m, nullptr, b->qs, y);
}
void dequantize_block_q5_0_neon(const uint8_t* in, float* y) {
  const BlockQ5_0* b = reinterpret_cast<const BlockQ5_0*>(in);
  dequantize_q45<16, true, false>(b->d, nullptr, b->qh, b->qs, y);
}
void dequantize_block_q5_1_neon(const uint8_t* in, float* y) {
  const BlockQ5_1* b = reinterpret_cast<const BlockQ5_1*>(in);
  dequantize_q45<0, true, true>(b->d, b->m, b->qh, b->qs, y);
}

void dequantize_block_tq2_0_neon(const uint8_t* in, float* y) {
  const BlockTQ2_0* b = reinterpret_cast<const BlockTQ2_0*>(in);
  const float32x4_t d = vdupq_n_f32(load_fp16(b->d));
  const uint8x16_t three = vdupq_n_u8(3);
  const int16x8_t one = vdupq_n_s16(1);
  for (int g = 0; g < 2; ++g)
    for (int h = 0; h < 2; ++h) {
      uint8x16_t q = vld1q_u8(b->qs + 32 * g + 16 * h);
      for (int l = 0; l < 4; ++l) {
        uint8x16_t t = vandq_u8(l == 0 ? q : vshlq_u8(q, vdupq_n_s8(static_cast<int8_t>(-2 * l))), three);
        int16x8_t a = vsubq_s16(vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(t))), one);
        int16x8_t c = vsubq_s16(vreinterpretq_s16_u16(vmovl_high_u8(t)), one);
        store16<false>(a, c, d, d, y + 128 * g + 32 * l + 16 * h);
      }
    }
}

// The scalar table (constant-initialized, so ready before this copy) with the NEON
// block functions in place of the formats above; K-quants, IQ formats and searches are scalar.
GgufKernels make_gguf_neon() {
  GgufKernels k = gguf_scalar;
  k.quantize[kQ8_0] = quantize_blocks<kQK, sizeof(BlockQ8_0), quantize_block_q8_0_neon>;
  k.quantize[kQ4_0] = kq::legacy_with_imatrix<quantize_blocks<kQK, sizeof(BlockQ4_0), quantize_block_q4_0_neon>,
                                              kq::quantize_row_legacy_imatrix<8, false>>;
  k.quantize[kQ4_1] = kq::legacy_with_imatrix<quantize_blocks<kQK, sizeof(BlockQ4_1), quantize_block_q4_1_neon>,
                                              kq::quantize_row_legacy_imatrix<15, true>>;
  k.quantize[kQ5_0] = kq::legacy_with_imatrix<quantize_blocks<kQK, sizeof(BlockQ5_0), quantize_block_q5_0_neon>,
                                              kq::quantize_row_legacy_imatrix<16, false>>;
  k.quantize[kQ5_1] = kq::legacy_with_imatrix<quantize_blocks<kQK, sizeof(BlockQ5_1), quantize_block_q5_1_neon>,
                                              kq::quantize_row_legacy_imatrix<31, true>>;
  k.quantize[kTQ2_0] = quantize_blocks<kQK_K, sizeof(BlockTQ2_0), quantize_block_tq2_0_neon>;
  k.dequantize[kQ8_0] = dequantize_blocks<kQK, sizeof(BlockQ8_0), dequantize_block_q8_0_neon>;
  k.dequantize[kQ4_0] = dequantize_blocks<kQK, sizeof(BlockQ4_0), dequantize_block_q4_0_neon>;
  k.dequantize[kQ4_1] = dequantize_blocks<kQK, sizeof(BlockQ4_1), dequantize_block_q4_1_neon>;
  k.dequantize[kQ5_0] = dequantize_blocks<kQK, sizeof(BlockQ5_0), dequantize_block_q5_0_neon>;
  k.dequantize[kQ5_1] = dequantize_blocks<kQK, sizeof(BlockQ5_1), dequantize_block_q5_1_neon>;
  k.dequantize[kTQ2_0] = dequantize_blocks<kQK_K, sizeof(BlockTQ2_0), dequantize_block_tq2_0_neon>;
  return k;
}

}  // namespace

const GgufKernels gguf_neon = make_gguf_neon();

}  // namespace lowbit
