// GGUF block formats, aarch64 Advanced SIMD variant. Q8_0 quantization and the
// dequantization of Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 and TQ2_0 are vectorized; the other
// quantizers (their argmax/min-max searches and ggml's x86 casts) and TQ1_0's
// dequantization are gguf_ops.h's scalar block functions.
// Rounding: fcvtas (vcvtaq_s32_f32) rounds half away from zero, ggml's roundf; the
// half-precision scales go through gguf_ops.h's conversions; no fused multiply-add.
#include <arm_neon.h>

#include "gguf/gguf.h"
#include "gguf/gguf_ops.h"

namespace lowbit {
namespace {

template <size_t kBlock, size_t kBytes, bool (*kFn)(const float*, uint8_t*)>
bool quantize_blocks(const float* x, size_t nblocks, uint8_t* out) {
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

}  // namespace

const GgufKernels gguf_neon = {
    {
        quantize_blocks<kQK, sizeof(BlockQ8_0), quantize_block_q8_0_neon>,
        quantize_blocks<kQK, sizeof(BlockQ4_0), quantize_block_q4_0>,
        quantize_blocks<kQK, sizeof(BlockQ4_1), quantize_block_q4_1>,
        quantize_blocks<kQK, sizeof(BlockQ5_0), quantize_block_q5_0>,
        quantize_blocks<kQK, sizeof(BlockQ5_1), quantize_block_q5_1>,
        quantize_blocks<kQK_K, sizeof(BlockTQ1_0), quantize_block_tq1_0>,
        quantize_blocks<kQK_K, sizeof(BlockTQ2_0), quantize_block_tq2_0>,
    },
    {
        dequantize_blocks<kQK, sizeof(BlockQ8_0), dequantize_block_q8_0_neon>,
        dequantize_blocks<kQK, sizeof(BlockQ4_0), dequantize_block_q4_0_neon>,
        dequantize_blocks<kQK, sizeof(BlockQ4_1), dequantize_block_q4_1_neon>,
        dequantize_blocks<kQK, sizeof(BlockQ5_0), dequantize_block_q5_0_neon>,
        dequantize_blocks<kQK, sizeof(BlockQ5_1), dequantize_block_q5_1_neon>,
        dequantize_blocks<kQK_K, sizeof(BlockTQ1_0), dequantize_block_tq1_0>,
        dequantize_blocks<kQK_K, sizeof(BlockTQ2_0), dequantize_block_tq2_0_neon>,
    },
};

}  // namespace lowbit
