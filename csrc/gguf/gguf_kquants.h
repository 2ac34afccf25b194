// Scalar definitions of llama.cpp's super-block formats (K-quants, IQ4_NL, IQ4_XS,
// Q8_K): the encoders of ggml_quantize_chunk (quantize_q4_K and friends, with and
// without an importance matrix) and the decoders of the types' to_float.
//
// Byte-exact with ggml means the same float32 operations in the same order:
// every sum below runs left to right as ggml's loops do, products group as C
// groups `w*x*l` ((w*x)*l), int operands convert to float where C converts them,
// nothing is contracted into an FMA (ggml-base is built for baseline x86-64,
// which has no FMA; this file is compiled with -ffp-contract=off), and
// nearest_int is ggml's magic-number rounding (ties to even; out-of-range values
// give the same garbage ggml gives). Integer narrowings ((uint8_t), (int8_t)) are
// C's modular ones. Only finite input arrives here (the driver checks first).
//
// Included by every ISA variant with internal linkage.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "gguf/gguf.h"
#include "gguf/gguf_ops.h"

namespace lowbit {
namespace {
namespace kq {

constexpr float kGroupMaxEps = 1e-15f;

// ggml's non-linear 4-bit grid (kvalues_iq4nl).
constexpr int8_t kIq4nlValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                     1,    13,   25,  38,  53,  69,  89,  113};

inline int nearest_int(float fval) {
  const float val = fval + 12582912.f;
  int32_t i;
  std::memcpy(&i, &val, 4);
  return (i & 0x007fffff) - 0x00400000;
}

inline int imax(int a, int b) { return a > b ? a : b; }
inline int imin(int a, int b) { return a < b ? a : b; }

// ---- sub-block searches (ggml-quants.c helpers) --------------------------------

// make_qx_quants: symmetric codes L = l + nmax in [0, 2 nmax), weighted (qw, or
// w = x^2 for rmse_type 1 without qw), 18 extra scale candidates. Only the
// rmse_type == 1 path is used by the formats here.
inline float make_qx_quants(int n, int nmax, const float* x, int8_t* L, const float* qw) {
  float max = 0, amax = 0;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) { amax = ax; max = x[i]; }
  }
  if (amax < kGroupMaxEps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.f;
  }
  float iscale = static_cast<float>(-nmax) / max;
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    int l = nearest_int(iscale * x[i]);
    l = imax(-nmax, imin(nmax - 1, l));
    L[i] = static_cast<int8_t>(l + nmax);
    const float w = qw ? qw[i] : x[i] * x[i];
    const float fl = static_cast<float>(l);
    sumlx += w * x[i] * fl;
    suml2 += w * fl * fl;
  }
  float scale = suml2 ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(static_cast<float>(nmax) + 0.1f * static_cast<float>(is)) / max;
    sumlx = suml2 = 0;
    for (int i = 0; i < n; ++i) {
      int l = nearest_int(iscale * x[i]);
      l = imax(-nmax, imin(nmax - 1, l));
      const float w = qw ? qw[i] : x[i] * x[i];
      const float fl = static_cast<float>(l);
      sumlx += w * x[i] * fl;
      suml2 += w * fl * fl;
    }
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; ++i) {
        const int l = nearest_int(iscale * x[i]);
        L[i] = static_cast<int8_t>(nmax + imax(-nmax, imin(nmax - 1, l)));
      }
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// make_q3_quants with do_rmse: codes refined one at a time (5 sweeps), w = x^2.
inline float make_q3_quants(int n, int nmax, const float* x, int8_t* L) {
  float max = 0, amax = 0;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) { amax = ax; max = x[i]; }
  }
  if (amax < kGroupMaxEps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.f;
  }
  const float iscale = static_cast<float>(-nmax) / max;
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    int l = nearest_int(iscale * x[i]);
    l = imax(-nmax, imin(nmax - 1, l));
    L[i] = static_cast<int8_t>(l);
    const float w = x[i] * x[i];
    const float fl = static_cast<float>(l);
    sumlx += w * x[i] * fl;
    suml2 += w * fl * fl;
  }
  for (int itry = 0; itry < 5; ++itry) {
    int n_changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = x[i] * x[i];
      const float li = static_cast<float>(L[i]);
      float slx = sumlx - w * x[i] * li;
      if (slx > 0) {
        float sl2 = suml2 - w * li * li;
        int new_l = nearest_int(x[i] * sl2 / slx);
        new_l = imax(-nmax, imin(nmax - 1, new_l));
        if (new_l != L[i]) {
          const float fl = static_cast<float>(new_l);
          slx += w * x[i] * fl;
          sl2 += w * fl * fl;
          if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
            L[i] = static_cast<int8_t>(new_l);
            sumlx = slx;
            suml2 = sl2;
            ++n_changed;
          }
        }
      }
    }
    if (!n_changed) break;
  }
  for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(L[i] + nmax);
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// make_qkx2_quants (kX3 = false) and make_qkx3_quants (kX3 = true, weights given):
// asymmetric codes in [0, nmax] with a min, nstep + 1 candidate scales, each
// refined by a weighted least-squares fit of scale and min.
template <bool kX3, bool kMad>
inline float make_qkx_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L,
                             float* the_min, uint8_t* Laux, float rmin, float rdelta, int nstep) {
  float min = x[0], max = x[0];
  float sum_w = weights[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    const float w = weights[i];
    sum_w += w;
    sum_x += w * x[i];
  }
  if (min > 0) min = 0;
  if (kX3 ? !(max > min) : max == min) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    *the_min = -min;
    return 0.f;
  }
  float iscale = static_cast<float>(nmax) / (max - min);
  float scale = 1 / iscale;
  float best_error = 0;
  for (int i = 0; i < n; ++i) {
    const int l = nearest_int(iscale * (x[i] - min));
    L[i] = static_cast<uint8_t>(imax(0, imin(nmax, l)));
    float diff = scale * static_cast<float>(L[i]) + min - x[i];
    diff = kMad ? std::fabs(diff) : diff * diff;
    best_error += weights[i] * diff;
  }
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * static_cast<float>(is) + static_cast<float>(nmax)) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      int l = nearest_int(iscale * (x[i] - min));
      l = imax(0, imin(nmax, l));
      Laux[i] = static_cast<uint8_t>(l);
      const float w = weights[i], fl = static_cast<float>(l);
      sum_l += w * fl;
      sum_l2 += w * fl * fl;
      sum_xl += w * fl * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float cur_error = 0;
      for (int i = 0; i < n; ++i) {
        float diff = this_scale * static_cast<float>(Laux[i]) + this_min - x[i];
        diff = kMad ? std::fabs(diff) : diff * diff;
        cur_error += weights[i] * diff;
      }
      if (cur_error < best_error) {
        for (int i = 0; i < n; ++i) L[i] = Laux[i];
        best_error = cur_error;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *the_min = -min;
  return scale;
}

// make_qp_quants: non-negative codes in [0, nmax] for the sub-block scales/mins
// of the imatrix paths, weighted by quant_weights.
inline float make_qp_quants(int n, int nmax, const float* x, uint8_t* L, const float* qw) {
  float max = 0;
  for (int i = 0; i < n; ++i) max = max > x[i] ? max : x[i];  // MAX(max, x[i])
  if (max < kGroupMaxEps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.f;
  }
  float iscale = static_cast<float>(nmax) / max;
  for (int i = 0; i < n; ++i) L[i] = static_cast<uint8_t>(nearest_int(iscale * x[i]));
  const float scale = 1 / iscale;
  float best_mse = 0;
  for (int i = 0; i < n; ++i) {
    const float diff = x[i] - scale * static_cast<float>(L[i]);
    best_mse += qw[i] * diff * diff;
  }
  for (int is = -4; is <= 4; ++is) {
    if (is == 0) continue;
    const float iscale_is = (0.1f * static_cast<float>(is) + static_cast<float>(nmax)) / max;
    const float scale_is = 1 / iscale_is;
    float mse = 0;
    for (int i = 0; i < n; ++i) {
      int l = nearest_int(iscale_is * x[i]);
      l = imin(nmax, l);
      const float diff = x[i] - scale_is * static_cast<float>(l);
      mse += qw[i] * diff * diff;
    }
    if (mse < best_mse) {
      best_mse = mse;
      iscale = iscale_is;
    }
  }
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    int l = nearest_int(iscale * x[i]);
    l = imin(nmax, l);
    L[i] = static_cast<uint8_t>(l);
    const float w = qw[i], fl = static_cast<float>(l);
    sumlx += w * x[i] * fl;
    suml2 += w * fl * fl;
  }
  for (int itry = 0; itry < 5; ++itry) {
    int n_changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = qw[i], li = static_cast<float>(L[i]);
      float slx = sumlx - w * x[i] * li;
      float sl2 = suml2 - w * li * li;
      if (slx > 0 && sl2 > 0) {
        int new_l = nearest_int(x[i] * sl2 / slx);
        new_l = imin(nmax, new_l);
        if (new_l != L[i]) {
          const float fl = static_cast<float>(new_l);
          slx += w * x[i] * fl;
          sl2 += w * fl * fl;
          if (slx * slx * suml2 > sumlx * sumlx * sl2) {
            L[i] = static_cast<uint8_t>(new_l);
            sumlx = slx;
            suml2 = sl2;
            ++n_changed;
          }
        }
      }
    }
    if (!n_changed) break;
  }
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

inline void get_scale_min_k4(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
  }
}

// The 6-bit scale/min packing of Q4_K and Q5_K (12 bytes for 8 pairs).
inline void pack_scale_min_k4(int j, uint8_t ls, uint8_t lm, uint8_t* s) {
  if (j < 4) {
    s[j] = ls;
    s[j + 4] = lm;
  } else {
    s[j + 4] = static_cast<uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
    s[j - 4] |= static_cast<uint8_t>((ls >> 4) << 6);
    s[j - 0] |= static_cast<uint8_t>((lm >> 4) << 6);
  }
}

// The 6-bit signed scales of Q3_K (12 bytes for 16).
inline void pack_scale_q3(int j, int l, uint8_t* s) {  // l in [0, 63]
  if (j < 8) s[j] = static_cast<uint8_t>(l & 0xF);
  else s[j - 8] |= static_cast<uint8_t>((l & 0xF) << 4);
  l >>= 4;
  s[j % 4 + 8] |= static_cast<uint8_t>(l << (2 * (j / 4)));
}
inline int8_t unpack_scale_q3(int j, const uint8_t* s) {
  int8_t sc = static_cast<int8_t>(j < 8 ? s[j] & 0xF : s[j - 8] >> 4);
  return static_cast<int8_t>((sc | (((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32);
}

inline void pack_2bit(const uint8_t* L, uint8_t* qs) {  // Q2_K / Q3_K low bits
  for (int j = 0; j < kQK_K; j += 128)
    for (int l = 0; l < 32; ++l)
      qs[j / 4 + l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) |
                                            (L[j + l + 96] << 6));
}

inline float sum_sq(const float* x, int n) {
  float s = 0;
  for (int l = 0; l < n; ++l) s += x[l] * x[l];
  return s;
}

// ---- Q2_K ---------------------------------------------------------------------

inline void q2k_requantize(const float* x, BlockQ2_K* y, float dm_all, float mm_all, uint8_t* L) {
  for (int j = 0; j < kQK_K / 16; ++j) {
    const float d = dm_all * static_cast<float>(y->scales[j] & 0xF);
    if (!d) continue;
    const float m = mm_all * static_cast<float>(y->scales[j] >> 4);
    for (int ii = 0; ii < 16; ++ii) {
      const int l = nearest_int((x[16 * j + ii] + m) / d);
      L[16 * j + ii] = static_cast<uint8_t>(imax(0, imin(3, l)));
    }
  }
  pack_2bit(L, y->qs);
}

// The ref path's 4-bit codes of the 16 sub-block scales and mins, and d, dmin.
inline void q2_K_codes_ref(const float* scales, const float* mins, BlockQ2_K* y) {
  const float q4scale = 15.f;
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < 16; ++j) {
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  if (max_scale > 0) {
    const float iscale = q4scale / max_scale;
    for (int j = 0; j < 16; ++j) y->scales[j] = static_cast<uint8_t>(nearest_int(iscale * scales[j]));
    store_fp16(y->d, max_scale / q4scale);
  } else {
    for (int j = 0; j < 16; ++j) y->scales[j] = 0;
    store_fp16(y->d, 0.f);
  }
  if (max_min > 0) {
    const float iscale = q4scale / max_min;
    for (int j = 0; j < 16; ++j)  // (unsigned: a garbage negative code shifts without UB, same byte)
      y->scales[j] |= static_cast<uint8_t>(static_cast<unsigned>(nearest_int(iscale * mins[j])) << 4);
    store_fp16(y->dmin, max_min / q4scale);
  } else {
    store_fp16(y->dmin, 0.f);
  }
}

// The imatrix path's codes (make_qp_quants on the scales and mins, weighted by sw).
inline void q2_K_codes_imatrix(const float* scales, const float* mins, const float* sw, BlockQ2_K* y) {
  uint8_t Ls[16], Lm[16];
  const float dm = make_qp_quants(16, 15, scales, Ls, sw);
  const float mm = make_qp_quants(16, 15, mins, Lm, sw);
  store_fp16(y->d, dm);
  store_fp16(y->dmin, mm);
  for (int j = 0; j < 16; ++j) y->scales[j] = static_cast<uint8_t>(Ls[j] | (Lm[j] << 4));
}

inline void quantize_block_q2_K(const float* x, const float* qw, uint8_t* out) {
  BlockQ2_K* y = reinterpret_cast<BlockQ2_K*>(out);
  uint8_t L[kQK_K], Laux[16];
  float mins[16], scales[16], weights[16];
  if (!qw) {  // quantize_row_q2_K_ref
    for (int j = 0; j < 16; ++j) {
      for (int l = 0; l < 16; ++l) weights[l] = std::fabs(x[16 * j + l]);
      scales[j] = make_qkx_quants<false, true>(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f,
                                               0.1f, 15);
    }
    q2_K_codes_ref(scales, mins, y);
    q2k_requantize(x, y, load_fp16(y->d), load_fp16(y->dmin), L);
    return;
  }
  // quantize_row_q2_K_impl
  float sw[16] = {0};
  const float sigma2 = sum_sq(x, kQK_K) / kQK_K;
  for (int j = 0; j < 16; ++j) {
    for (int l = 0; l < 16; ++l) weights[l] = qw[16 * j + l] * std::sqrt(sigma2 + x[16 * j + l] * x[16 * j + l]);
    for (int l = 0; l < 16; ++l) sw[j] += weights[l];
    scales[j] = make_qkx_quants<true, false>(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.9f,
                                             0.05f, 36);
  }
  q2_K_codes_imatrix(scales, mins, sw, y);
  q2k_requantize(x, y, load_fp16(y->d), load_fp16(y->dmin), L);
}

inline void dequantize_block_q2_K(const uint8_t* in, float* y) {
  const BlockQ2_K* x = reinterpret_cast<const BlockQ2_K*>(in);
  const float d = load_fp16(x->d), min = load_fp16(x->dmin);
  const uint8_t* q = x->qs;
  int is = 0;
  for (int n = 0; n < kQK_K; n += 128) {
    int shift = 0;
    for (int j = 0; j < 4; ++j) {
      for (int h = 0; h < 2; ++h) {
        const uint8_t sc = x->scales[is++];
        const float dl = d * static_cast<float>(sc & 0xF), ml = min * static_cast<float>(sc >> 4);
        for (int l = 0; l < 16; ++l) *y++ = dl * static_cast<float>((q[l + 16 * h] >> shift) & 3) - ml;
      }
      shift += 2;
    }
    q += 32;
  }
}

// ---- Q3_K ---------------------------------------------------------------------

// The ref path's 6-bit codes of the 16 sub-block scales, and d (y->scales zeroed).
inline void q3_K_codes_ref(const float* scales, BlockQ3_K* y) {
  float max_scale = 0, amax = 0;
  for (int j = 0; j < 16; ++j) {
    const float scale = std::fabs(scales[j]);
    if (scale > amax) { amax = scale; max_scale = scales[j]; }
  }
  if (max_scale) {
    const float iscale = -32.f / max_scale;
    for (int j = 0; j < 16; ++j) {
      int8_t l = static_cast<int8_t>(nearest_int(iscale * scales[j]));
      l = static_cast<int8_t>(imax(-32, imin(31, l)) + 32);
      pack_scale_q3(j, l, y->scales);
    }
    store_fp16(y->d, 1 / iscale);
  } else {
    store_fp16(y->d, 0.f);
  }
}

inline void quantize_block_q3_K(const float* x, const float* qw, uint8_t* out) {
  BlockQ3_K* y = reinterpret_cast<BlockQ3_K*>(out);
  int8_t L[kQK_K];
  float scales[16];
  std::memset(y->scales, 0, 12);
  if (!qw) {  // quantize_row_q3_K_ref
    for (int j = 0; j < 16; ++j) scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j);
    q3_K_codes_ref(scales, y);
  } else {  // quantize_row_q3_K_impl
    float weight[16], sw[16];
    int8_t Ls[16];
    const float sigma2 = 2 * sum_sq(x, kQK_K) / kQK_K;
    for (int j = 0; j < 16; ++j) {
      for (int l = 0; l < 16; ++l) weight[l] = qw[16 * j + l] * std::sqrt(sigma2 + x[16 * j + l] * x[16 * j + l]);
      float sumw = 0;
      for (int l = 0; l < 16; ++l) sumw += weight[l];
      sw[j] = sumw;
      scales[j] = make_qx_quants(16, 4, x + 16 * j, L + 16 * j, weight);
    }
    const float d_block = make_qx_quants(16, 32, scales, Ls, sw);
    for (int j = 0; j < 16; ++j) pack_scale_q3(j, Ls[j], y->scales);
    store_fp16(y->d, d_block);
  }
  const float d_all = load_fp16(y->d);
  for (int j = 0; j < 16; ++j) {
    const float d = d_all * static_cast<float>(unpack_scale_q3(j, y->scales));
    if (!d) continue;
    for (int ii = 0; ii < 16; ++ii) {
      const int l = nearest_int(x[16 * j + ii] / d);
      L[16 * j + ii] = static_cast<int8_t>(imax(-4, imin(3, l)) + 4);
    }
  }
  std::memset(y->hmask, 0, kQK_K / 8);
  uint8_t U[kQK_K];
  int m = 0;
  uint8_t hm = 1;
  for (int j = 0; j < kQK_K; ++j) {
    int l = L[j];
    if (l > 3) {
      y->hmask[m] |= hm;
      l -= 4;
    }
    U[j] = static_cast<uint8_t>(l);
    if (++m == kQK_K / 8) {
      m = 0;
      hm = static_cast<uint8_t>(hm << 1);
    }
  }
  pack_2bit(U, y->qs);
}

inline void dequantize_block_q3_K(const uint8_t* in, float* y) {
  const BlockQ3_K* x = reinterpret_cast<const BlockQ3_K*>(in);
  const float d_all = load_fp16(x->d);
  const uint8_t* q = x->qs;
  const uint8_t* hm = x->hmask;
  uint8_t m = 1;
  int is = 0;
  for (int n = 0; n < kQK_K; n += 128) {
    int shift = 0;
    for (int j = 0; j < 4; ++j) {
      for (int h = 0; h < 2; ++h) {
        const float dl = d_all * static_cast<float>(unpack_scale_q3(is++, x->scales));
        for (int l = 0; l < 16; ++l) {
          const int v = ((q[l + 16 * h] >> shift) & 3) - ((hm[l + 16 * h] & m) ? 0 : 4);
          *y++ = dl * static_cast<float>(v);
        }
      }
      shift += 2;
      m = static_cast<uint8_t>(m << 1);
    }
    q += 32;
  }
}

// ---- Q4_K / Q5_K --------------------------------------------------------------

// The sub-block scales and mins of Q4_K (nmax 15) and Q5_K (nmax 31): the ref path
// (make_qkx2_quants, then 6-bit codes relative to the largest) or the imatrix
// path (make_qkx3_quants, then make_qp_quants on the scales and mins).
// The ref path's 6-bit codes of the 8 sub-block scales and mins (sc_out zeroed).
inline void qk45_codes_ref(const float* scales, const float* mins, uint8_t* d_out, uint8_t* dmin_out,
                           uint8_t* sc_out) {
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < 8; ++j) {
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
  const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
  for (int j = 0; j < 8; ++j) {
    uint8_t ls = static_cast<uint8_t>(nearest_int(inv_scale * scales[j]));
    uint8_t lm = static_cast<uint8_t>(nearest_int(inv_min * mins[j]));
    ls = ls < 63 ? ls : 63;
    lm = lm < 63 ? lm : 63;
    pack_scale_min_k4(j, ls, lm, sc_out);
  }
  store_fp16(d_out, max_scale / 63.f);
  store_fp16(dmin_out, max_min / 63.f);
}

// The imatrix path's codes of the 8 sub-block scales and mins (sc_out zeroed).
inline void qk45_codes_imatrix(const float* scales, const float* mins, const float* sw, uint8_t* d_out,
                               uint8_t* dmin_out, uint8_t* sc_out) {
  uint8_t Ls[8], Lm[8];
  const float d_block = make_qp_quants(8, 63, scales, Ls, sw);
  const float m_block = make_qp_quants(8, 63, mins, Lm, sw);
  for (int j = 0; j < 8; ++j) {
    const uint8_t ls = Ls[j] < 63 ? Ls[j] : 63, lm = Lm[j] < 63 ? Lm[j] : 63;
    pack_scale_min_k4(j, ls, lm, sc_out);
  }
  store_fp16(d_out, d_block);
  store_fp16(dmin_out, m_block);
}

template <int kNmax>
inline void qk45_scales(const float* x, const float* qw, uint8_t* L, uint8_t* d_out, uint8_t* dmin_out,
                        uint8_t* sc_out) {
  uint8_t Laux[32];
  float weights[32], mins[8], scales[8];
  std::memset(sc_out, 0, 12);
  if (!qw) {
    for (int j = 0; j < 8; ++j) {
      const float av_x = std::sqrt(sum_sq(x + 32 * j, 32) / 32);
      for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
      scales[j] = kNmax == 15
                      ? make_qkx_quants<false, false>(32, 15, x + 32 * j, weights, L + 32 * j, &mins[j], Laux,
                                                      -1.f, 0.1f, 20)
                      : make_qkx_quants<false, false>(32, 31, x + 32 * j, weights, L + 32 * j, &mins[j], Laux,
                                                      -0.5f, 0.1f, 15);
    }
    qk45_codes_ref(scales, mins, d_out, dmin_out, sc_out);
    return;
  }
  float sw[8];
  const float sigma2 = 2 * sum_sq(x, kQK_K) / kQK_K;
  for (int j = 0; j < 8; ++j) {
    for (int l = 0; l < 32; ++l) weights[l] = qw[32 * j + l] * std::sqrt(sigma2 + x[32 * j + l] * x[32 * j + l]);
    float sumw = 0;
    for (int l = 0; l < 32; ++l) sumw += weights[l];
    sw[j] = sumw;
    scales[j] = make_qkx_quants<true, false>(32, kNmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -0.9f,
                                             0.05f, 36);
  }
  qk45_codes_imatrix(scales, mins, sw, d_out, dmin_out, sc_out);
}

template <int kNmax>
inline void qk45_requantize(const float* x, const uint8_t* d_in, const uint8_t* dmin_in, const uint8_t* sc,
                            uint8_t* L) {
  const float d_all = load_fp16(d_in), m_all = load_fp16(dmin_in);
  for (int j = 0; j < 8; ++j) {
    uint8_t s, m;
    get_scale_min_k4(j, sc, &s, &m);
    const float d = d_all * static_cast<float>(s);
    if (!d) continue;
    const float dm = m_all * static_cast<float>(m);
    for (int ii = 0; ii < 32; ++ii) {
      const int l = nearest_int((x[32 * j + ii] + dm) / d);
      L[32 * j + ii] = static_cast<uint8_t>(imax(0, imin(kNmax, l)));
    }
  }
}

inline void pack_q4_K(const uint8_t* L, BlockQ4_K* y) {
  uint8_t* q = y->qs;
  for (int j = 0; j < kQK_K; j += 64) {
    for (int l = 0; l < 32; ++l) q[l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 4));
    q += 32;
  }
}

inline void quantize_block_q4_K(const float* x, const float* qw, uint8_t* out) {
  BlockQ4_K* y = reinterpret_cast<BlockQ4_K*>(out);
  uint8_t L[kQK_K];
  qk45_scales<15>(x, qw, L, y->d, y->dmin, y->scales);
  qk45_requantize<15>(x, y->d, y->dmin, y->scales, L);
  pack_q4_K(L, y);
}

inline void pack_q5_K(uint8_t* L, BlockQ5_K* y);

inline void quantize_block_q5_K(const float* x, const float* qw, uint8_t* out) {
  BlockQ5_K* y = reinterpret_cast<BlockQ5_K*>(out);
  uint8_t L[kQK_K];
  qk45_scales<31>(x, qw, L, y->d, y->dmin, y->scales);
  qk45_requantize<31>(x, y->d, y->dmin, y->scales, L);
  pack_q5_K(L, y);
}

inline void pack_q5_K(uint8_t* L, BlockQ5_K* y) {
  uint8_t* qh = y->qh;
  uint8_t* ql = y->qs;
  std::memset(qh, 0, kQK_K / 8);
  uint8_t m1 = 1, m2 = 2;
  for (int n = 0; n < kQK_K; n += 64) {
    for (int j = 0; j < 32; ++j) {
      int l1 = L[n + j];
      if (l1 > 15) { l1 -= 16; qh[j] |= m1; }
      int l2 = L[n + j + 32];
      if (l2 > 15) { l2 -= 16; qh[j] |= m2; }
      ql[j] = static_cast<uint8_t>(l1 | (l2 << 4));
    }
    m1 = static_cast<uint8_t>(m1 << 2);
    m2 = static_cast<uint8_t>(m2 << 2);
    ql += 32;
  }
}

inline void dequantize_block_q4_K(const uint8_t* in, float* y) {
  const BlockQ4_K* x = reinterpret_cast<const BlockQ4_K*>(in);
  const float d = load_fp16(x->d), min = load_fp16(x->dmin);
  const uint8_t* q = x->qs;
  int is = 0;
  for (int j = 0; j < kQK_K; j += 64) {
    uint8_t sc, m;
    get_scale_min_k4(is + 0, x->scales, &sc, &m);
    const float d1 = d * static_cast<float>(sc), m1 = min * static_cast<float>(m);
    get_scale_min_k4(is + 1, x->scales, &sc, &m);
    const float d2 = d * static_cast<float>(sc), m2 = min * static_cast<float>(m);
    for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>(q[l] & 0xF) - m1;
    for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>(q[l] >> 4) - m2;
    q += 32;
    is += 2;
  }
}

inline void dequantize_block_q5_K(const uint8_t* in, float* y) {
  const BlockQ5_K* x = reinterpret_cast<const BlockQ5_K*>(in);
  const float d = load_fp16(x->d), min = load_fp16(x->dmin);
  const uint8_t* ql = x->qs;
  const uint8_t* qh = x->qh;
  int is = 0;
  uint8_t u1 = 1, u2 = 2;
  for (int j = 0; j < kQK_K; j += 64) {
    uint8_t sc, m;
    get_scale_min_k4(is + 0, x->scales, &sc, &m);
    const float d1 = d * static_cast<float>(sc), m1 = min * static_cast<float>(m);
    get_scale_min_k4(is + 1, x->scales, &sc, &m);
    const float d2 = d * static_cast<float>(sc), m2 = min * static_cast<float>(m);
    for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
    for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
    ql += 32;
    is += 2;
    u1 = static_cast<uint8_t>(u1 << 2);
    u2 = static_cast<uint8_t>(u2 << 2);
  }
}

// ---- Q6_K ---------------------------------------------------------------------

// Q6_K after the 16 sub-block fits (scales, codes L): the block's bytes.
inline void q6_K_finish(const float* x, const float* scales, int8_t* L, uint8_t* out);

inline void quantize_block_q6_K(const float* x, const float* qw, uint8_t* out) {
  int8_t L[kQK_K];
  float scales[16];
  for (int ib = 0; ib < 16; ++ib)
    scales[ib] = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib, qw ? qw + 16 * ib : nullptr);
  q6_K_finish(x, scales, L, out);
}

inline void q6_K_finish(const float* x, const float* scales, int8_t* L, uint8_t* out) {
  BlockQ6_K* y = reinterpret_cast<BlockQ6_K*>(out);
  float max_scale = 0, max_abs_scale = 0;
  for (int ib = 0; ib < 16; ++ib) {
    const float scale = scales[ib];
    const float abs_scale = std::fabs(scale);
    if (abs_scale > max_abs_scale) { max_abs_scale = abs_scale; max_scale = scale; }
  }
  if (max_abs_scale < kGroupMaxEps) {
    std::memset(out, 0, sizeof(BlockQ6_K));
    store_fp16(y->d, 0.f);
    return;
  }
  const float iscale = -128.f / max_scale;
  store_fp16(y->d, 1 / iscale);
  for (int ib = 0; ib < 16; ++ib) y->scales[ib] = static_cast<int8_t>(imin(127, nearest_int(iscale * scales[ib])));
  const float d_all = load_fp16(y->d);
  for (int j = 0; j < 16; ++j) {
    const float d = d_all * static_cast<float>(y->scales[j]);
    if (!d) continue;
    for (int ii = 0; ii < 16; ++ii) {
      const int l = nearest_int(x[16 * j + ii] / d);
      L[16 * j + ii] = static_cast<int8_t>(imax(-32, imin(31, l)) + 32);
    }
  }
  uint8_t* ql = y->ql;
  uint8_t* qh = y->qh;
  for (int j = 0; j < kQK_K; j += 128) {
    for (int l = 0; l < 32; ++l) {
      const uint8_t q1 = L[j + l + 0] & 0xF, q2 = L[j + l + 32] & 0xF;
      const uint8_t q3 = L[j + l + 64] & 0xF, q4 = L[j + l + 96] & 0xF;
      ql[l + 0] = static_cast<uint8_t>(q1 | (q3 << 4));
      ql[l + 32] = static_cast<uint8_t>(q2 | (q4 << 4));
      qh[l] = static_cast<uint8_t>((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) |
                                   ((L[j + l + 96] >> 4) << 6));
    }
    ql += 64;
    qh += 32;
  }
}

inline void dequantize_block_q6_K(const uint8_t* in, float* y) {
  const BlockQ6_K* x = reinterpret_cast<const BlockQ6_K*>(in);
  const float d = load_fp16(x->d);
  const uint8_t* ql = x->ql;
  const uint8_t* qh = x->qh;
  const int8_t* sc = x->scales;
  for (int n = 0; n < kQK_K; n += 128) {
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = ((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = ((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l + 0] = d * static_cast<float>(sc[is + 0]) * static_cast<float>(q1);
      y[l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
      y[l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
      y[l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
    }
    y += 128;
    ql += 64;
    qh += 32;
    sc += 8;
  }
}

// ---- Q8_K (quantize_row_q8_K_ref; the imatrix is ignored) ---------------------

inline void quantize_block_q8_K(const float* x, const float*, uint8_t* out) {
  BlockQ8_K* y = reinterpret_cast<BlockQ8_K*>(out);
  float max = 0, amax = 0;
  for (int j = 0; j < kQK_K; ++j) {
    const float ax = std::fabs(x[j]);
    if (ax > amax) { amax = ax; max = x[j]; }
  }
  if (!amax) {
    std::memset(out, 0, sizeof(BlockQ8_K));  // d = 0, qs = 0; bsums are 0 too
    return;
  }
  const float iscale = -127.f / max;
  for (int j = 0; j < kQK_K; ++j) y->qs[j] = static_cast<int8_t>(imin(127, nearest_int(iscale * x[j])));
  for (int j = 0; j < 16; ++j) {
    int sum = 0;
    for (int ii = 0; ii < 16; ++ii) sum += y->qs[j * 16 + ii];
    const int16_t s16 = static_cast<int16_t>(sum);
    std::memcpy(y->bsums + 2 * j, &s16, 2);
  }
  const float d = 1 / iscale;
  std::memcpy(y->d, &d, 4);
}

inline void dequantize_block_q8_K(const uint8_t* in, float* y) {
  const BlockQ8_K* x = reinterpret_cast<const BlockQ8_K*>(in);
  float d;
  std::memcpy(&d, x->d, 4);
  for (int j = 0; j < kQK_K; ++j) y[j] = d * static_cast<float>(x->qs[j]);
}

// ---- IQ4_NL / IQ4_XS (quantize_row_iq4_nl_impl with ntry = 7) -----------------

inline int best_index_int8(int n, const int8_t* val, float x) {
  if (x <= val[0]) return 0;
  if (x >= val[n - 1]) return n - 1;
  int ml = 0, mu = n - 1;
  while (mu - ml > 1) {
    const int mav = (ml + mu) / 2;
    if (x < val[mav]) mu = mav;
    else ml = mav;
  }
  return x - val[mu - 1] < val[mu] - x ? mu - 1 : mu;
}

// One 32-value sub-block: the scale of the best of 15 candidates (codes in Lb).
// Returns 0 for a sub-block whose max |x| is below kGroupMaxEps (Lb untouched).
inline float iq4_subblock(const float* xb, const float* weight, uint8_t* Lb) {
  const int8_t* values = kIq4nlValues;
  const int ntry = 7;
  float amax = 0, max = 0;
  for (int j = 0; j < 32; ++j) {
    const float ax = std::fabs(xb[j]);
    if (ax > amax) { amax = ax; max = xb[j]; }
  }
  if (amax < kGroupMaxEps) return 0;
  float d = -max / static_cast<float>(values[0]);
  float id = 1 / d;
  float sumqx = 0, sumq2 = 0;
  for (int j = 0; j < 32; ++j) {
    const float al = id * xb[j];
    const int l = best_index_int8(16, values, al);
    Lb[j] = static_cast<uint8_t>(l);
    const float q = values[l], w = weight[j];
    sumqx += w * q * xb[j];
    sumq2 += w * q * q;
  }
  d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
  float best = d * sumqx;
  for (int itry = -ntry; itry <= ntry; ++itry) {
    id = static_cast<float>(itry + values[0]) / max;
    sumqx = sumq2 = 0;
    for (int j = 0; j < 32; ++j) {
      const float al = id * xb[j];
      const int l = best_index_int8(16, values, al);
      const float q = values[l], w = weight[j];
      sumqx += w * q * xb[j];
      sumq2 += w * q * q;
    }
    if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
      d = sumqx / sumq2;
      best = d * sumqx;
    }
  }
  return d;
}

inline void iq4_weights(const float* xb, const float* qw, float sigma2, float* weight) {
  if (qw) {
    for (int j = 0; j < 32; ++j) weight[j] = qw[j] * std::sqrt(sigma2 + xb[j] * xb[j]);
  } else {
    for (int j = 0; j < 32; ++j) weight[j] = xb[j] * xb[j];
  }
}

inline void pack_iq4(const uint8_t* L, int n, uint8_t* q4) {
  for (int i = 0; i < n / 32; ++i)
    for (int j = 0; j < 16; ++j) q4[16 * i + j] = static_cast<uint8_t>(L[32 * i + j] | (L[32 * i + 16 + j] << 4));
}

inline void quantize_block_iq4_nl(const float* x, const float* qw, uint8_t* out) {
  BlockIQ4_NL* y = reinterpret_cast<BlockIQ4_NL*>(out);
  float weight[32];
  uint8_t L[32] = {0};
  float sigma2 = sum_sq(x, 32);
  sigma2 *= 2.f / 32;
  iq4_weights(x, qw, sigma2, weight);
  const float d = iq4_subblock(x, weight, L);
  store_fp16(y->d, d);
  const float id = d ? 1 / d : 0;
  for (int j = 0; j < 32; ++j) L[j] = static_cast<uint8_t>(best_index_int8(16, kIq4nlValues, id * x[j]));
  pack_iq4(L, 32, y->qs);
}

// IQ4_XS sub-block ib's 6-bit scale: l = clamp(nearest_int(id * scale), -32, 31) stored as l + 32
// (4 low bits in y->scales_l, 2 high bits gathered in *scales_h: iq4_xs_store_scales_h writes
// them once all 8 are in); returns the sub-block's step d * l. Every ISA's IQ4_XS encoder uses it.
inline float iq4_xs_sub_scale(int ib, float d, float id, float scale, BlockIQ4_XS* y, uint16_t* scales_h) {
  int l = nearest_int(id * scale);
  l = imax(-32, imin(31, l));
  const float dl = d * static_cast<float>(l);
  l += 32;
  const uint8_t l_l = static_cast<uint8_t>(l & 0xf), l_h = static_cast<uint8_t>(l >> 4);
  if (ib % 2 == 0) y->scales_l[ib / 2] = l_l;
  else y->scales_l[ib / 2] |= static_cast<uint8_t>(l_l << 4);
  *scales_h = static_cast<uint16_t>(*scales_h | (l_h << 2 * (ib % 8)));
  return dl;
}

inline void iq4_xs_store_scales_h(BlockIQ4_XS* y, uint16_t scales_h) {
  y->scales_h[0] = static_cast<uint8_t>(scales_h);
  y->scales_h[1] = static_cast<uint8_t>(scales_h >> 8);
}

inline void quantize_block_iq4_xs(const float* x, const float* qw, uint8_t* out) {
  BlockIQ4_XS* y = reinterpret_cast<BlockIQ4_XS*>(out);
  float weight[32], scales[8];
  uint8_t L[kQK_K] = {0};
  float sigma2 = sum_sq(x, kQK_K);
  sigma2 *= 2.f / kQK_K;
  float max_scale = 0, amax_scale = 0;
  for (int ib = 0; ib < 8; ++ib) {
    iq4_weights(x + 32 * ib, qw ? qw + 32 * ib : nullptr, sigma2, weight);
    scales[ib] = iq4_subblock(x + 32 * ib, weight, L + 32 * ib);
    const float abs_d = std::fabs(scales[ib]);
    if (abs_d > amax_scale) { amax_scale = abs_d; max_scale = scales[ib]; }
  }
  uint16_t scales_h = 0;
  const float d = -max_scale / 32;
  store_fp16(y->d, d);
  const float id = d ? 1 / d : 0.f;
  for (int ib = 0; ib < 8; ++ib) {
    const float dl = iq4_xs_sub_scale(ib, d, id, scales[ib], y, &scales_h);
    const float idl = dl ? 1 / dl : 0.f;
    for (int j = 0; j < 32; ++j)
      L[32 * ib + j] = static_cast<uint8_t>(best_index_int8(16, kIq4nlValues, idl * x[32 * ib + j]));
  }
  iq4_xs_store_scales_h(y, scales_h);
  pack_iq4(L, kQK_K, y->qs);
}

inline void dequantize_block_iq4_nl(const uint8_t* in, float* y) {
  const BlockIQ4_NL* x = reinterpret_cast<const BlockIQ4_NL*>(in);
  const float d = load_fp16(x->d);
  for (int j = 0; j < 16; ++j) {
    y[j] = d * static_cast<float>(kIq4nlValues[x->qs[j] & 0xf]);
    y[j + 16] = d * static_cast<float>(kIq4nlValues[x->qs[j] >> 4]);
  }
}

inline void dequantize_block_iq4_xs(const uint8_t* in, float* y) {
  const BlockIQ4_XS* x = reinterpret_cast<const BlockIQ4_XS*>(in);
  const float d = load_fp16(x->d);
  const unsigned scales_h = x->scales_h[0] | (x->scales_h[1] << 8);
  const uint8_t* qs = x->qs;
  for (int ib = 0; ib < 8; ++ib) {
    const int ls = ((x->scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) | (((scales_h >> 2 * ib) & 3) << 4);
    const float dl = d * static_cast<float>(ls - 32);
    for (int j = 0; j < 16; ++j) {
      y[j + 0] = dl * static_cast<float>(kIq4nlValues[qs[j] & 0xf]);
      y[j + 16] = dl * static_cast<float>(kIq4nlValues[qs[j] >> 4]);
    }
    y += 32;
    qs += 16;
  }
}

// ---- Q4_0 / Q4_1 / Q5_0 / Q5_1 with an importance matrix --------------------------
//
// quantize_row_q4_0_impl and friends: the weights use sigma2 over the whole row,
// so these run on whole rows (the driver never splits a row for them).
// kNmax: Q4_0 8, Q5_0 16 (symmetric, make_qx_quants); Q4_1 15, Q5_1 31 (make_qkx3_quants).
template <int kNmax, bool kAsym>
inline void quantize_row_legacy_imatrix(const float* x, size_t nblocks, const float* qw, uint8_t* out) {
  const size_t n = nblocks * kQK;
  float sum_x2 = 0;
  for (size_t j = 0; j < n; ++j) sum_x2 += x[j] * x[j];
  const float sigma2 = sum_x2 / static_cast<float>(n);
  constexpr bool kFive = kNmax > 15;
  constexpr size_t kBytes = 2 + (kAsym ? 2 : 0) + (kFive ? 4 : 0) + 16;
  for (size_t ib = 0; ib < nblocks; ++ib) {
    const float* xb = x + kQK * ib;
    const float* w = qw + kQK * ib;
    uint8_t* y = out + kBytes * ib;
    float weight[kQK];
    for (int j = 0; j < kQK; ++j) weight[j] = w[j] * std::sqrt(sigma2 + xb[j] * xb[j]);
    uint8_t L[kQK];
    if (kAsym) {
      uint8_t Laux[kQK];
      float min;
      const float d = make_qkx_quants<true, false>(kQK, kNmax, xb, weight, L, &min, Laux, -0.9f, 0.05f, 36);
      store_fp16(y, d);
      store_fp16(y + 2, -min);
    } else {
      int8_t Ls[kQK];
      const float d = make_qx_quants(kQK, kNmax, xb, Ls, weight);
      store_fp16(y, d);
      for (int j = 0; j < kQK; ++j) L[j] = static_cast<uint8_t>(Ls[j]);
    }
    uint8_t* qs = y + kBytes - 16;
    uint32_t qh = 0;
    for (int j = 0; j < 16; ++j) {
      qs[j] = static_cast<uint8_t>((L[j] & 0x0F) | ((L[j + 16] & 0x0F) << 4));
      qh |= ((L[j] & 0x10u) >> 4) << j;
      qh |= ((L[j + 16] & 0x10u) >> 4) << (j + 16);
    }
    if (kFive) std::memcpy(y + (kAsym ? 4 : 2), &qh, 4);
  }
}

// ---- loops over blocks (the kernel-table entries) ------------------------------

// The encoders above assume finite input: the check comes first, per block.
template <size_t kBlock, size_t kBytes, void (*kFn)(const float*, const float*, uint8_t*)>
bool quantize_blocks_w(const float* x, size_t nblocks, const float* qw, uint8_t* out) {
  for (size_t i = 0; i < nblocks; ++i) {
    const float* xb = x + i * kBlock;
    uint32_t bad = 0;
    for (size_t j = 0; j < kBlock; ++j) bad |= (f32_bits(xb[j]) & 0x7f800000u) == 0x7f800000u;
    if (bad) return false;
    kFn(xb, qw ? qw + i * kBlock : nullptr, out + i * kBytes);
  }
  return true;
}

// A legacy-format kernel (no importance weights) that takes the imatrix path of
// quantize_row_legacy_imatrix when weights are given (whole rows then).
template <bool (*kFn)(const float*, size_t, const float*, uint8_t*), void (*kRowFn)(const float*, size_t, const float*, uint8_t*)>
bool legacy_with_imatrix(const float* x, size_t nblocks, const float* qw, uint8_t* out) {
  if (!qw) return kFn(x, nblocks, nullptr, out);
  for (size_t i = 0; i < nblocks * kQK; ++i)
    if ((f32_bits(x[i]) & 0x7f800000u) == 0x7f800000u) return false;
  kRowFn(x, nblocks, qw, out);
  return true;
}

template <size_t kBlock, size_t kBytes, void (*kFn)(const uint8_t*, float*)>
void dequantize_blocks(const uint8_t* in, size_t nblocks, float* out) {
  for (size_t i = 0; i < nblocks; ++i) kFn(in + i * kBytes, out + i * kBlock);
}

}  // namespace kq
}  // namespace
}  // namespace lowbit
