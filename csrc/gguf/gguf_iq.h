// Decoders of the read-only llama.cpp types: IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS,
// IQ3_S, IQ1_S, IQ1_M, MXFP4, F16, BF16, bit-identical to ggml's to_float
// (dequantize_row_* in ggml-quants.c, ggml_fp16_to_fp32_row, ggml_bf16_to_fp32_row):
// the same float32 products in the same order. One block per call; included by
// every ISA variant with internal linkage.
#pragma once
#include <cstdint>
#include <cstring>

#include "gguf/gguf.h"
#include "gguf/gguf_iq_tables.h"
#include "gguf/gguf_ops.h"

namespace lowbit {
namespace {
namespace iq {

inline uint32_t le32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline unsigned le16(const uint8_t* p) { return static_cast<unsigned>(p[0] | (p[1] << 8)); }

// ksigns_iq2xs: 7 sign bits and their parity as the 8th.
inline unsigned ksigns(unsigned i) { return i | (static_cast<unsigned>(__builtin_parity(i)) << 7); }
// ggml writes `v * (signs & kmask[j] ? -1.f : 1.f)`, which the compiler turns into
// a sign flip (a NaN's sign flips too): so do we, explicitly.
inline float sgn(float v, unsigned signs, int j) { return (signs >> j) & 1 ? -v : v; }
inline const uint8_t* grid8(const uint64_t* g, unsigned i) { return reinterpret_cast<const uint8_t*>(g + i); }
inline const uint8_t* grid4(const uint32_t* g, unsigned i) { return reinterpret_cast<const uint8_t*>(g + i); }

inline void dequantize_block_iq2_xxs(const uint8_t* in, float* y) {
  const float d = load_fp16(in);
  const uint8_t* qs = in + 2;
  for (int ib32 = 0; ib32 < 8; ++ib32) {
    const uint8_t* aux8 = qs + 8 * ib32;
    const uint32_t aux1 = le32(aux8 + 4);
    const float db = d * (0.5f + static_cast<float>(aux1 >> 28)) * 0.25f;
    for (int l = 0; l < 4; ++l) {
      const uint8_t* grid = grid8(iqgrid::iq2xxs_grid, aux8[l]);
      const unsigned signs = ksigns((aux1 >> 7 * l) & 127);
      for (int j = 0; j < 8; ++j) y[j] = sgn(db * static_cast<float>(grid[j]), signs, j);
      y += 8;
    }
  }
}

inline void dequantize_block_iq2_xs(const uint8_t* in, float* y) {
  const BlockIQ2_XS* x = reinterpret_cast<const BlockIQ2_XS*>(in);
  const float d = load_fp16(x->d);
  for (int ib32 = 0; ib32 < 8; ++ib32) {
    float db[2];
    db[0] = d * (0.5f + static_cast<float>(x->scales[ib32] & 0xf)) * 0.25f;
    db[1] = d * (0.5f + static_cast<float>(x->scales[ib32] >> 4)) * 0.25f;
    for (int l = 0; l < 4; ++l) {
      const unsigned q = le16(x->qs + 2 * (4 * ib32 + l));
      const uint8_t* grid = grid8(iqgrid::iq2xs_grid, q & 511);
      const unsigned signs = ksigns(q >> 9);
      for (int j = 0; j < 8; ++j) y[j] = sgn(db[l / 2] * static_cast<float>(grid[j]), signs, j);
      y += 8;
    }
  }
}

inline void dequantize_block_iq2_s(const uint8_t* in, float* y) {
  const BlockIQ2_S* x = reinterpret_cast<const BlockIQ2_S*>(in);
  const float d = load_fp16(x->d);
  const uint8_t* qs = x->qs;
  const uint8_t* signs = x->qs + 32;
  for (int ib32 = 0; ib32 < 8; ++ib32) {
    float db[2];
    db[0] = d * (0.5f + static_cast<float>(x->scales[ib32] & 0xf)) * 0.25f;
    db[1] = d * (0.5f + static_cast<float>(x->scales[ib32] >> 4)) * 0.25f;
    for (int l = 0; l < 4; ++l) {
      const float dl = db[l / 2];
      const uint8_t* grid = grid8(iqgrid::iq2s_grid, qs[l] | ((x->qh[ib32] << (8 - 2 * l)) & 0x300));
      for (int j = 0; j < 8; ++j) y[j] = sgn(dl * static_cast<float>(grid[j]), signs[l], j);
      y += 8;
    }
    qs += 4;
    signs += 4;
  }
}

inline void dequantize_block_iq3_xxs(const uint8_t* in, float* y) {
  const float d = load_fp16(in);
  const uint8_t* qs = in + 2;
  const uint8_t* scales_and_signs = qs + 64;
  for (int ib32 = 0; ib32 < 8; ++ib32) {
    const uint32_t aux32 = le32(scales_and_signs + 4 * ib32);
    const float db = d * (0.5f + static_cast<float>(aux32 >> 28)) * 0.5f;
    for (int l = 0; l < 4; ++l) {
      const unsigned signs = ksigns((aux32 >> 7 * l) & 127);
      const uint8_t* g1 = grid4(iqgrid::iq3xxs_grid, qs[2 * l + 0]);
      const uint8_t* g2 = grid4(iqgrid::iq3xxs_grid, qs[2 * l + 1]);
      for (int j = 0; j < 4; ++j) {
        y[j + 0] = sgn(db * static_cast<float>(g1[j]), signs, j + 0);
        y[j + 4] = sgn(db * static_cast<float>(g2[j]), signs, j + 4);
      }
      y += 8;
    }
    qs += 8;
  }
}

inline void dequantize_block_iq3_s(const uint8_t* in, float* y) {
  const BlockIQ3_S* x = reinterpret_cast<const BlockIQ3_S*>(in);
  const float d = load_fp16(x->d);
  const uint8_t* qs = x->qs;
  const uint8_t* qh = x->qh;
  const uint8_t* signs = x->signs;
  for (int ib32 = 0; ib32 < 8; ib32 += 2) {
    const float db[2] = {d * static_cast<float>(1 + 2 * (x->scales[ib32 / 2] & 0xf)),
                         d * static_cast<float>(1 + 2 * (x->scales[ib32 / 2] >> 4))};
    for (int h = 0; h < 2; ++h) {
      for (int l = 0; l < 4; ++l) {
        const uint8_t* g1 = grid4(iqgrid::iq3s_grid, qs[2 * l + 0] | ((qh[h] << (8 - 2 * l)) & 256));
        const uint8_t* g2 = grid4(iqgrid::iq3s_grid, qs[2 * l + 1] | ((qh[h] << (7 - 2 * l)) & 256));
        for (int j = 0; j < 4; ++j) {
          y[j + 0] = sgn(db[h] * static_cast<float>(g1[j]), signs[l], j + 0);
          y[j + 4] = sgn(db[h] * static_cast<float>(g2[j]), signs[l], j + 4);
        }
        y += 8;
      }
      qs += 8;
      signs += 4;
    }
    qh += 2;
  }
}

constexpr float kIq1sDelta = 0.125f;

inline void dequantize_block_iq1_s(const uint8_t* in, float* y) {
  const BlockIQ1_S* x = reinterpret_cast<const BlockIQ1_S*>(in);
  const float d = load_fp16(x->d);
  const uint8_t* qs = x->qs;
  for (int ib = 0; ib < 8; ++ib) {
    const unsigned qh = le16(x->qh + 2 * ib);
    const float dl = d * static_cast<float>(2 * ((qh >> 12) & 7) + 1);
    const float delta = qh & 0x8000 ? -kIq1sDelta : kIq1sDelta;
    for (int l = 0; l < 4; ++l) {
      const int8_t* grid = reinterpret_cast<const int8_t*>(iqgrid::iq1s_grid + (qs[l] | (((qh >> 3 * l) & 7) << 8)));
      for (int j = 0; j < 8; ++j) y[j] = dl * (static_cast<float>(grid[j]) + delta);
      y += 8;
    }
    qs += 4;
  }
}

inline void dequantize_block_iq1_m(const uint8_t* in, float* y) {
  const BlockIQ1_M* x = reinterpret_cast<const BlockIQ1_M*>(in);
  unsigned sc[4];
  for (int i = 0; i < 4; ++i) sc[i] = le16(x->scales + 2 * i);
  const unsigned s16 = (sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000);
  const float d = fp16_to_fp32(static_cast<uint16_t>(s16));
  const uint8_t* qs = x->qs;
  const uint8_t* qh = x->qh;
  for (int ib = 0; ib < 8; ++ib) {
    const float dl1 = d * static_cast<float>(2 * ((sc[ib / 2] >> (6 * (ib % 2) + 0)) & 0x7) + 1);
    const float dl2 = d * static_cast<float>(2 * ((sc[ib / 2] >> (6 * (ib % 2) + 3)) & 0x7) + 1);
    const unsigned idx[4] = {qs[0] | ((qh[0] << 8) & 0x700u), qs[1] | ((qh[0] << 4) & 0x700u),
                             qs[2] | ((qh[1] << 8) & 0x700u), qs[3] | ((qh[1] << 4) & 0x700u)};
    const float delta[4] = {qh[0] & 0x08 ? -kIq1sDelta : kIq1sDelta, qh[0] & 0x80 ? -kIq1sDelta : kIq1sDelta,
                            qh[1] & 0x08 ? -kIq1sDelta : kIq1sDelta, qh[1] & 0x80 ? -kIq1sDelta : kIq1sDelta};
    for (int l = 0; l < 4; ++l) {
      const int8_t* grid = reinterpret_cast<const int8_t*>(iqgrid::iq1s_grid + idx[l]);
      const float dl = l < 2 ? dl1 : dl2;
      for (int j = 0; j < 8; ++j) y[j] = dl * (static_cast<float>(grid[j]) + delta[l]);
      y += 8;
    }
    qs += 4;
    qh += 2;
  }
}

constexpr int8_t kMxfp4Values[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

inline void dequantize_block_mxfp4(const uint8_t* in, float* y) {
  const BlockMXFP4* x = reinterpret_cast<const BlockMXFP4*>(in);
  const uint32_t bits = x->e < 2 ? 0x00200000u << x->e : static_cast<uint32_t>(x->e - 1) << 23;
  const float d = f32_from_bits(bits);  // 2^(e - 128): ggml_e8m0_to_fp32_half
  for (int j = 0; j < 16; ++j) {
    y[j] = static_cast<float>(kMxfp4Values[x->qs[j] & 0x0F]) * d;
    y[j + 16] = static_cast<float>(kMxfp4Values[x->qs[j] >> 4]) * d;
  }
}

// ggml's software GGML_FP16_TO_FP32 quiets a signalling NaN (it multiplies by 2^-112).
inline void dequantize_block_f16(const uint8_t* in, float* y) {
  const float v = load_fp16(in);
  const uint32_t b = f32_bits(v);
  *y = (b & 0x7fffffffu) > 0x7f800000u ? f32_from_bits(b | 0x00400000u) : v;
}

inline void dequantize_block_bf16(const uint8_t* in, float* y) {
  *y = f32_from_bits(static_cast<uint32_t>(in[0] | (in[1] << 8)) << 16);
}

}  // namespace iq
}  // namespace
}  // namespace lowbit
