// GGUF block formats, AVX2 variant (compiled with -mavx2 -mfma -mf16c -mbmi2; no
// FMA is used: every product and sum is rounded on its own, as ggml's reference is).
//
// Byte-exact with gguf_ops.h, which it falls back to for the rare blocks that need
// care (1/d overflowing, a zero min/max whose sign matters). How the exactness is kept:
// - max |x| is an integer max of the sign-cleared bit patterns (the same order as
//   the floats), which also flags NaN/Inf (patterns >= 0x7f800000) for free;
// - Q4_0/Q5_0's "first value of largest magnitude" is max or min of the block unless
//   max == -min; those ties take a path that finds the first index;
// - roundf (half away from zero) is trunc(p + copysign(0.49999997f, p)), exact for
//   every float32 (the addend is the float just below 0.5; checked against roundf on
//   all 2^32 inputs during development);
// - the float16 scales go through F16C, IEEE round-to-nearest-even like
//   fp32_to_fp16 (also checked on all finite float32);
// - divisions stay divisions (d = max / 127, not max * (1/127)), vector or scalar.
#include <immintrin.h>

#include <cfloat>

#include "gguf/gguf.h"
#include "gguf/gguf_iq.h"
#include "gguf/gguf_kquants.h"
#include "gguf/gguf_search.h"
#include "gguf/gguf_ops.h"

namespace lowbit {
namespace {

inline __m256i abs_bits(__m256 v) {
  return _mm256_and_si256(_mm256_castps_si256(v), _mm256_set1_epi32(0x7fffffff));
}

inline uint32_t hmax_u31(__m256i m) {  // max of non-negative int32 lanes
  __m128i a = _mm_max_epi32(_mm256_castsi256_si128(m), _mm256_extracti128_si256(m, 1));
  a = _mm_max_epi32(a, _mm_shuffle_epi32(a, 0x4E));
  a = _mm_max_epi32(a, _mm_shuffle_epi32(a, 0xB1));
  return static_cast<uint32_t>(_mm_cvtsi128_si32(a));
}

inline void store_half(uint8_t* p, float f) {
  const unsigned short h = _cvtss_sh(f, 0);  // 0: round to nearest even
  p[0] = static_cast<uint8_t>(h);
  p[1] = static_cast<uint8_t>(h >> 8);
}
inline float load_half(const uint8_t* p) { return _cvtsh_ss(static_cast<unsigned short>(p[0] | (p[1] << 8))); }

inline bool finite_inverse(float id) { return std::fabs(id) <= FLT_MAX; }

// roundf(p) as int32 for finite p.
inline __m256i roundf_epi32(__m256 p) {
  const __m256 sign = _mm256_castsi256_ps(_mm256_set1_epi32(static_cast<int>(0x80000000u)));
  const __m256 below_half = _mm256_castsi256_ps(_mm256_set1_epi32(0x3effffff));
  return _mm256_cvttps_epi32(_mm256_add_ps(p, _mm256_or_ps(_mm256_and_ps(p, sign), below_half)));
}

// 32 int32 lanes holding 0..255 (or -128..127 with kSigned) -> 32 bytes in order.
template <bool kSigned>
inline __m256i pack32(__m256i a, __m256i b, __m256i c, __m256i d) {
  const __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
  const __m256i r = kSigned ? _mm256_packs_epi16(ab, cd) : _mm256_packus_epi16(ab, cd);
  return _mm256_permutevar8x32_epi32(r, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}
// 16 int32 lanes holding 0..255 -> 16 bytes in order.
inline __m128i pack16(__m256i a, __m256i b) {
  const __m256i ab = _mm256_permute4x64_epi64(_mm256_packs_epi32(a, b), 0xD8);
  return _mm_packus_epi16(_mm256_castsi256_si128(ab), _mm256_extracti128_si256(ab, 1));
}

// ---- batches of 8 blocks -------------------------------------------------------------
// The Q formats quantize 8 blocks at a time: the per-block maxima/minima are reduced
// into one vector (lane b = block b), so the scale divisions and the float16
// conversions run once per 8 blocks. Lanes flagged "slow" (1/d overflowing, a tie
// for the largest magnitude, a zero extreme) take the single-block path instead.

// Lane b of the result = op over the 8 lanes of a[b].
template <class Op>
inline __m256 reduce8_ps(const __m256 a[8], Op op) {
  __m256 t[4];
  for (int k = 0; k < 4; ++k)
    t[k] = op(_mm256_unpacklo_ps(a[2 * k], a[2 * k + 1]), _mm256_unpackhi_ps(a[2 * k], a[2 * k + 1]));
  const __m256 u0 = op(_mm256_castpd_ps(_mm256_unpacklo_pd(_mm256_castps_pd(t[0]), _mm256_castps_pd(t[1]))),
                       _mm256_castpd_ps(_mm256_unpackhi_pd(_mm256_castps_pd(t[0]), _mm256_castps_pd(t[1]))));
  const __m256 u1 = op(_mm256_castpd_ps(_mm256_unpacklo_pd(_mm256_castps_pd(t[2]), _mm256_castps_pd(t[3]))),
                       _mm256_castpd_ps(_mm256_unpackhi_pd(_mm256_castps_pd(t[2]), _mm256_castps_pd(t[3]))));
  return op(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}
struct MaxOp {
  __m256 operator()(__m256 a, __m256 b) const { return _mm256_max_ps(a, b); }
};
struct MinOp {
  __m256 operator()(__m256 a, __m256 b) const { return _mm256_min_ps(a, b); }
};

inline __m256 sign_mask() { return _mm256_castsi256_ps(_mm256_set1_epi32(static_cast<int>(0x80000000u))); }
// ggml's `id = d ? 1.0f/d : 0.0f`, 8 lanes.
inline __m256 inverse8(__m256 d) {
  return _mm256_and_ps(_mm256_div_ps(_mm256_set1_ps(1.0f), d), _mm256_cmp_ps(d, _mm256_setzero_ps(), _CMP_NEQ_OQ));
}
inline int inf_lanes(__m256 v) {
  return _mm256_movemask_ps(_mm256_cmp_ps(_mm256_andnot_ps(sign_mask(), v), _mm256_set1_ps(FLT_MAX), _CMP_GT_OQ));
}

// Per-block scale data of a batch, stored for the block loop.
struct Batch {
  alignas(32) float id[8];
  alignas(32) float m[8];
  alignas(16) uint16_t hd[8];
  alignas(16) uint16_t hm[8];
  int slow;
};

// Max and min of each of 8 blocks; false if any value is NaN or Inf.
inline bool minmax8(const float* xb, __m256* MX, __m256* MN) {
  __m256 mx[8], mn[8], bad = _mm256_setzero_ps();
  for (int b = 0; b < 8; ++b) {
    const float* p = xb + b * kQK;
    const __m256 v0 = _mm256_loadu_ps(p), v1 = _mm256_loadu_ps(p + 8);
    const __m256 v2 = _mm256_loadu_ps(p + 16), v3 = _mm256_loadu_ps(p + 24);
    mx[b] = _mm256_max_ps(_mm256_max_ps(v0, v1), _mm256_max_ps(v2, v3));
    mn[b] = _mm256_min_ps(_mm256_min_ps(v0, v1), _mm256_min_ps(v2, v3));
    bad = _mm256_or_ps(bad, _mm256_or_ps(_mm256_cmp_ps(v0, v1, _CMP_UNORD_Q), _mm256_cmp_ps(v2, v3, _CMP_UNORD_Q)));
  }
  *MX = reduce8_ps(mx, MaxOp());
  *MN = reduce8_ps(mn, MinOp());
  const __m256 inf = _mm256_set1_ps(INFINITY);
  bad = _mm256_or_ps(bad, _mm256_or_ps(_mm256_cmp_ps(*MX, inf, _CMP_EQ_OQ),
                                       _mm256_cmp_ps(*MN, _mm256_xor_ps(inf, sign_mask()), _CMP_EQ_OQ)));
  return _mm256_movemask_ps(bad) == 0;
}

// ---- Q8_0 -------------------------------------------------------------------------

inline void q8_0_codes(const float* p, float id, uint8_t* qs) {
  const __m256 vid = _mm256_set1_ps(id);
  const __m256i q = pack32<true>(
      roundf_epi32(_mm256_mul_ps(_mm256_loadu_ps(p), vid)), roundf_epi32(_mm256_mul_ps(_mm256_loadu_ps(p + 8), vid)),
      roundf_epi32(_mm256_mul_ps(_mm256_loadu_ps(p + 16), vid)), roundf_epi32(_mm256_mul_ps(_mm256_loadu_ps(p + 24), vid)));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(qs), q);
}

inline bool q8_0_one(const float* xb, uint8_t* yb) {
  const __m256 v0 = _mm256_loadu_ps(xb), v1 = _mm256_loadu_ps(xb + 8);
  const __m256 v2 = _mm256_loadu_ps(xb + 16), v3 = _mm256_loadu_ps(xb + 24);
  const uint32_t mb = hmax_u31(_mm256_max_epi32(_mm256_max_epi32(abs_bits(v0), abs_bits(v1)),
                                                _mm256_max_epi32(abs_bits(v2), abs_bits(v3))));
  if (mb >= 0x7f800000u) return false;
  const float d = f32_from_bits(mb) / 127.0f, id = inverse(d);
  if (!finite_inverse(id)) return quantize_block_q8_0(xb, yb);
  store_half(yb, d);
  q8_0_codes(xb, id, yb + 2);
  return true;
}

bool quantize_q8_0(const float* x, size_t nblocks, uint8_t* out) {
  constexpr size_t kBytes = sizeof(BlockQ8_0);
  size_t i = 0;
  for (; i + 8 <= nblocks; i += 8) {
    const float* xb = x + i * kQK;
    uint8_t* yb = out + i * kBytes;
    __m256i m[8];
    for (int b = 0; b < 8; ++b) {
      const float* p = xb + b * kQK;
      m[b] = _mm256_max_epi32(_mm256_max_epi32(abs_bits(_mm256_loadu_ps(p)), abs_bits(_mm256_loadu_ps(p + 8))),
                              _mm256_max_epi32(abs_bits(_mm256_loadu_ps(p + 16)), abs_bits(_mm256_loadu_ps(p + 24))));
    }
    // max |x| bit patterns reduce as int32: lane b = block b; > FLT_MAX's pattern is NaN/Inf
    __m256i t[4];
    for (int k = 0; k < 4; ++k)
      t[k] = _mm256_max_epi32(_mm256_unpacklo_epi32(m[2 * k], m[2 * k + 1]), _mm256_unpackhi_epi32(m[2 * k], m[2 * k + 1]));
    const __m256i u0 = _mm256_max_epi32(_mm256_unpacklo_epi64(t[0], t[1]), _mm256_unpackhi_epi64(t[0], t[1]));
    const __m256i u1 = _mm256_max_epi32(_mm256_unpacklo_epi64(t[2], t[3]), _mm256_unpackhi_epi64(t[2], t[3]));
    const __m256i am = _mm256_max_epi32(_mm256_permute2x128_si256(u0, u1, 0x20), _mm256_permute2x128_si256(u0, u1, 0x31));
    if (_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(am, _mm256_set1_epi32(0x7f7fffff))))) return false;
    const __m256 d = _mm256_div_ps(_mm256_castsi256_ps(am), _mm256_set1_ps(127.0f));
    Batch B;
    const __m256 id = inverse8(d);
    B.slow = inf_lanes(id);
    _mm256_store_ps(B.id, id);
    _mm_store_si128(reinterpret_cast<__m128i*>(B.hd), _mm256_cvtps_ph(d, 0));
    for (int b = 0; b < 8; ++b) {
      const float* p = xb + b * kQK;
      uint8_t* y = yb + b * kBytes;
      if ((B.slow >> b) & 1) {
        quantize_block_q8_0(p, y);
        continue;
      }
      std::memcpy(y, &B.hd[b], 2);
      q8_0_codes(p, B.id[b], y + 2);
    }
  }
  for (; i < nblocks; ++i)
    if (!q8_0_one(x + i * kQK, out + i * kBytes)) return false;
  return true;
}

// ---- Q4_0 / Q5_0: d = max / -div, q = min(top, (int)(x * id + bias)) ----------------

inline void sym_codes_vec(const float* p, float id, float bias, int top, __m256i q[4]) {
  const __m256 vid = _mm256_set1_ps(id), vbias = _mm256_set1_ps(bias);
  const __m256i vtop = _mm256_set1_epi32(top);
  for (int k = 0; k < 4; ++k)
    q[k] = _mm256_min_epi32(_mm256_cvttps_epi32(_mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(p + 8 * k), vid), vbias)), vtop);
}

// One block: 0 ok (d and codes q[4] set), 1 NaN/Inf, 2 leave the block to scalar code.
inline int sym_one(const float* xb, float div, float bias, int top, float* d_out, __m256i q[4]) {
  __m256i a[4];
  for (int k = 0; k < 4; ++k) a[k] = abs_bits(_mm256_loadu_ps(xb + 8 * k));
  const uint32_t mb = hmax_u31(_mm256_max_epi32(_mm256_max_epi32(a[0], a[1]), _mm256_max_epi32(a[2], a[3])));
  if (mb >= 0x7f800000u) return 1;
  // The first value of largest magnitude (ggml: `if (amax < fabsf(v))`; gguf-py: argmax).
  const __m256i vm = _mm256_set1_epi32(static_cast<int>(mb));
  uint32_t hits = 0;
  for (int k = 0; k < 4; ++k)
    hits |= static_cast<uint32_t>(_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(a[k], vm)))) << (8 * k);
  const float max = xb[__builtin_ctz(hits)];  // hits != 0: mb is one of the lanes
  const float d = max / -div, id = inverse(d);
  if (!finite_inverse(id)) return 2;
  sym_codes_vec(xb, id, bias, top, q);
  *d_out = d;
  return 0;
}

// d = (the value of largest magnitude) / -div for 8 blocks. When max > -min that
// value is max, when max < -min it is min; a tie (max == -min, all zeros included)
// needs the first occurrence: a slow lane.
inline bool sym_batch(const float* xb, float div, Batch* B) {
  __m256 MX, MN;
  if (!minmax8(xb, &MX, &MN)) return false;
  const __m256 neg_mn = _mm256_xor_ps(MN, sign_mask());
  const __m256 smax = _mm256_blendv_ps(MN, MX, _mm256_cmp_ps(MX, neg_mn, _CMP_GT_OQ));
  const __m256 d = _mm256_div_ps(smax, _mm256_set1_ps(-div));
  const __m256 id = inverse8(d);
  B->slow = _mm256_movemask_ps(_mm256_cmp_ps(MX, neg_mn, _CMP_EQ_OQ)) | inf_lanes(id);
  _mm256_store_ps(B->id, id);
  _mm_store_si128(reinterpret_cast<__m128i*>(B->hd), _mm256_cvtps_ph(d, 0));
  return true;
}

inline __m128i q4_nibbles(const __m256i q[4]) {  // codes <= 15
  return pack16(_mm256_or_si256(q[0], _mm256_slli_epi32(q[2], 4)), _mm256_or_si256(q[1], _mm256_slli_epi32(q[3], 4)));
}
inline uint32_t high_bits(const __m256i q[4]) {  // bit 4 of each of the 32 codes
  uint32_t h = 0;
  for (int k = 0; k < 4; ++k)
    h |= static_cast<uint32_t>(_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_slli_epi32(q[k], 27)))) << (8 * k);
  return h;
}
inline __m128i low_nibbles(const __m256i q[4]) {
  const __m256i m = _mm256_set1_epi32(0x0F);
  return pack16(_mm256_or_si256(_mm256_and_si256(q[0], m), _mm256_slli_epi32(_mm256_and_si256(q[2], m), 4)),
                _mm256_or_si256(_mm256_and_si256(q[1], m), _mm256_slli_epi32(_mm256_and_si256(q[3], m), 4)));
}
inline void store_u32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }  // little-endian host

inline void q4_0_store(uint8_t* y, const uint16_t* hd, const __m256i q[4]) {
  std::memcpy(y, hd, 2);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(y + 2), q4_nibbles(q));
}
inline void q5_0_store(uint8_t* y, const uint16_t* hd, const __m256i q[4]) {
  std::memcpy(y, hd, 2);
  store_u32(y + 2, high_bits(q));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(y + 6), low_nibbles(q));
}

template <size_t kBytes, int kDiv, int kTop, bool (*kScalar)(const float*, uint8_t*),
          void (*kStore)(uint8_t*, const uint16_t*, const __m256i*)>
bool quantize_sym(const float* x, size_t nblocks, uint8_t* out) {
  const float div = static_cast<float>(kDiv), bias = static_cast<float>(kDiv) + 0.5f;
  size_t i = 0;
  for (; i + 8 <= nblocks; i += 8) {
    const float* xb = x + i * kQK;
    uint8_t* yb = out + i * kBytes;
    Batch B;
    if (!sym_batch(xb, div, &B)) return false;
    for (int b = 0; b < 8; ++b) {
      const float* p = xb + b * kQK;
      uint8_t* y = yb + b * kBytes;
      __m256i q[4];
      if ((B.slow >> b) & 1) {
        float d;
        if (sym_one(p, div, bias, kTop, &d, q) != 0) {
          kScalar(p, y);
          continue;
        }
        const uint16_t h = _cvtss_sh(d, 0);
        kStore(y, &h, q);
        continue;
      }
      sym_codes_vec(p, B.id[b], bias, kTop, q);
      kStore(y, &B.hd[b], q);
    }
  }
  for (; i < nblocks; ++i) {
    const float* p = x + i * kQK;
    uint8_t* y = out + i * kBytes;
    float d;
    __m256i q[4];
    const int r = sym_one(p, div, bias, kTop, &d, q);
    if (r == 1) return false;
    if (r == 2) {
      kScalar(p, y);
      continue;
    }
    const uint16_t h = _cvtss_sh(d, 0);
    kStore(y, &h, q);
  }
  return true;
}

bool quantize_q4_0(const float* x, size_t nblocks, uint8_t* out) {
  return quantize_sym<sizeof(BlockQ4_0), 8, 15, quantize_block_q4_0, q4_0_store>(x, nblocks, out);
}
bool quantize_q5_0(const float* x, size_t nblocks, uint8_t* out) {
  return quantize_sym<sizeof(BlockQ5_0), 16, 31, quantize_block_q5_0, q5_0_store>(x, nblocks, out);
}

// ---- Q4_1 / Q5_1: d = (max - min) / div, q = min(top, (int)((x - min) * id + 0.5f)) --

inline void asym_codes_vec(const float* p, float id, float mn, int top, __m256i q[4]) {
  const __m256 vid = _mm256_set1_ps(id), vmn = _mm256_set1_ps(mn), half = _mm256_set1_ps(0.5f);
  const __m256i vtop = _mm256_set1_epi32(top);
  for (int k = 0; k < 4; ++k)
    q[k] = _mm256_min_epi32(
        _mm256_cvttps_epi32(_mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(p + 8 * k), vmn), vid), half)),
        vtop);
}

// Slow lanes: a zero min or max (its sign is decided by scalar code), d or 1/d overflowing.
inline bool asym_batch(const float* xb, float div, Batch* B) {
  __m256 MX, MN;
  if (!minmax8(xb, &MX, &MN)) return false;
  const __m256 d = _mm256_div_ps(_mm256_sub_ps(MX, MN), _mm256_set1_ps(div));
  const __m256 id = inverse8(d);
  const __m256 zero = _mm256_setzero_ps();
  B->slow = _mm256_movemask_ps(_mm256_or_ps(_mm256_cmp_ps(MN, zero, _CMP_EQ_OQ), _mm256_cmp_ps(MX, zero, _CMP_EQ_OQ))) |
            inf_lanes(d) | inf_lanes(id);
  _mm256_store_ps(B->id, id);
  _mm256_store_ps(B->m, MN);
  _mm_store_si128(reinterpret_cast<__m128i*>(B->hd), _mm256_cvtps_ph(d, 0));
  _mm_store_si128(reinterpret_cast<__m128i*>(B->hm), _mm256_cvtps_ph(MN, 0));
  return true;
}

inline void q4_1_store(uint8_t* y, const uint16_t* hd, const uint16_t* hm, const __m256i q[4]) {
  std::memcpy(y, hd, 2);
  std::memcpy(y + 2, hm, 2);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(y + 4), q4_nibbles(q));
}
inline void q5_1_store(uint8_t* y, const uint16_t* hd, const uint16_t* hm, const __m256i q[4]) {
  std::memcpy(y, hd, 2);
  std::memcpy(y + 2, hm, 2);
  store_u32(y + 4, high_bits(q));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(y + 8), low_nibbles(q));
}

template <size_t kBytes, int kDiv, bool (*kScalar)(const float*, uint8_t*),
          void (*kStore)(uint8_t*, const uint16_t*, const uint16_t*, const __m256i*)>
bool quantize_asym(const float* x, size_t nblocks, uint8_t* out) {
  const float div = static_cast<float>(kDiv);
  size_t i = 0;
  for (; i + 8 <= nblocks; i += 8) {
    const float* xb = x + i * kQK;
    uint8_t* yb = out + i * kBytes;
    Batch B;
    if (!asym_batch(xb, div, &B)) return false;
    for (int b = 0; b < 8; ++b) {
      const float* p = xb + b * kQK;
      uint8_t* y = yb + b * kBytes;
      if ((B.slow >> b) & 1) {
        kScalar(p, y);
        continue;
      }
      __m256i q[4];
      asym_codes_vec(p, B.id[b], B.m[b], kDiv, q);
      kStore(y, &B.hd[b], &B.hm[b], q);
    }
  }
  for (; i < nblocks; ++i)  // the last < 8 blocks: scalar code
    if (!kScalar(x + i * kQK, out + i * kBytes)) return false;
  return true;
}

bool quantize_q4_1(const float* x, size_t nblocks, uint8_t* out) {
  return quantize_asym<sizeof(BlockQ4_1), 15, quantize_block_q4_1, q4_1_store>(x, nblocks, out);
}
bool quantize_q5_1(const float* x, size_t nblocks, uint8_t* out) {
  return quantize_asym<sizeof(BlockQ5_1), 31, quantize_block_q5_1, q5_1_store>(x, nblocks, out);
}

// ---- TQ1_0 / TQ2_0 ------------------------------------------------------------------

// max |x| over a 256-value block as bits; >= 0x7f800000 means NaN/Inf.
inline uint32_t absmax_bits_256(const float* xb) {
  __m256i m0 = _mm256_setzero_si256(), m1 = m0, m2 = m0, m3 = m0;
  for (int k = 0; k < kQK_K; k += 32) {
    m0 = _mm256_max_epi32(m0, abs_bits(_mm256_loadu_ps(xb + k)));
    m1 = _mm256_max_epi32(m1, abs_bits(_mm256_loadu_ps(xb + k + 8)));
    m2 = _mm256_max_epi32(m2, abs_bits(_mm256_loadu_ps(xb + k + 16)));
    m3 = _mm256_max_epi32(m3, abs_bits(_mm256_loadu_ps(xb + k + 24)));
  }
  return hmax_u31(_mm256_max_epi32(_mm256_max_epi32(m0, m1), _mm256_max_epi32(m2, m3)));
}

// Trits roundf(x * id) + 1 of values 8k..8k+7. |x * id| <= 1 + 2^-23 < 1.5, so roundf
// is 1 exactly when p >= 0.5 and -1 exactly when p <= -0.5.
inline __m256i trits(const float* xb, int k, __m256 vid) {
  const __m256 p = _mm256_mul_ps(_mm256_loadu_ps(xb + 8 * k), vid);
  const __m256i ge = _mm256_castps_si256(_mm256_cmp_ps(p, _mm256_set1_ps(0.5f), _CMP_GE_OQ));
  const __m256i le = _mm256_castps_si256(_mm256_cmp_ps(p, _mm256_set1_ps(-0.5f), _CMP_LE_OQ));
  return _mm256_sub_epi32(_mm256_add_epi32(_mm256_set1_epi32(1), le), ge);
}

inline __m256i mul3(__m256i v) { return _mm256_add_epi32(v, _mm256_add_epi32(v, v)); }
inline __m128i mul3(__m128i v) { return _mm_add_epi32(v, _mm_add_epi32(v, v)); }
// ceil(v * 256 / 243) = (v * 256 + 242) / 243 for 0 <= v <= 242 (checked exhaustively).
inline __m256i tq1_bytes(__m256i v) {
  return _mm256_srli_epi32(_mm256_add_epi32(_mm256_mullo_epi32(v, _mm256_set1_epi32(17261)),
                                            _mm256_set1_epi32(16383)), 14);
}
inline __m128i tq1_bytes(__m128i v) {
  return _mm_srli_epi32(_mm_add_epi32(_mm_mullo_epi32(v, _mm_set1_epi32(17261)), _mm_set1_epi32(16383)), 14);
}

bool quantize_tq1_0(const float* x, size_t nblocks, uint8_t* out) {
  for (size_t i = 0; i < nblocks; ++i) {
    const float* xb = x + i * kQK_K;
    uint8_t* yb = out + i * sizeof(BlockTQ1_0);
    const uint32_t mb = absmax_bits_256(xb);
    if (mb >= 0x7f800000u) return false;
    const float d = f32_from_bits(mb), id = inverse(d);
    if (!finite_inverse(id)) {
      quantize_block_tq1_0(xb, yb);
      continue;
    }
    const __m256 vid = _mm256_set1_ps(id);
    __m256i w[4];
    for (int jv = 0; jv < 4; ++jv) {  // byte m < 32: values m, m+32, ..., m+128 -> vectors 4n + jv
      __m256i h = trits(xb, jv, vid);
      for (int n = 1; n < 5; ++n) h = _mm256_add_epi32(mul3(h), trits(xb, 4 * n + jv, vid));
      w[jv] = tq1_bytes(h);
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(yb), pack32<false>(w[0], w[1], w[2], w[3]));
    for (int jv = 0; jv < 2; ++jv) {  // byte 32+m: values 160+m+16n -> vectors 20 + 2n + jv
      __m256i h = trits(xb, 20 + jv, vid);
      for (int n = 1; n < 5; ++n) h = _mm256_add_epi32(mul3(h), trits(xb, 20 + 2 * n + jv, vid));
      w[jv] = tq1_bytes(h);
    }
    _mm_storeu_si128(reinterpret_cast<__m128i*>(yb + 32), pack16(w[0], w[1]));
    // qh byte j: values 240+j, 244+j, 248+j, 252+j = low/high halves of vectors 30, 31.
    const __m256i t30 = trits(xb, 30, vid), t31 = trits(xb, 31, vid);
    __m128i h = _mm256_castsi256_si128(t30);
    h = _mm_add_epi32(mul3(h), _mm256_extracti128_si256(t30, 1));
    h = _mm_add_epi32(mul3(h), _mm256_castsi256_si128(t31));
    h = _mm_add_epi32(mul3(h), _mm256_extracti128_si256(t31, 1));
    const __m128i qh = tq1_bytes(mul3(h));
    store_u32(yb + 48, static_cast<uint32_t>(_mm_cvtsi128_si32(_mm_packus_epi16(_mm_packs_epi32(qh, qh), qh))));
    store_half(yb + 52, d);
  }
  return true;
}

bool quantize_tq2_0(const float* x, size_t nblocks, uint8_t* out) {
  for (size_t i = 0; i < nblocks; ++i) {
    const float* xb = x + i * kQK_K;
    uint8_t* yb = out + i * sizeof(BlockTQ2_0);
    const uint32_t mb = absmax_bits_256(xb);
    if (mb >= 0x7f800000u) return false;
    const float d = f32_from_bits(mb), id = inverse(d);
    if (!finite_inverse(id)) {
      quantize_block_tq2_0(xb, yb);
      continue;
    }
    const __m256 vid = _mm256_set1_ps(id);
    for (int g = 0; g < 2; ++g) {  // byte 32g+m: values 128g+m+32l at bits 2l -> vectors 16g + 4l + jv
      __m256i w[4];
      for (int jv = 0; jv < 4; ++jv) {
        __m256i b = trits(xb, 16 * g + jv, vid);
        b = _mm256_or_si256(b, _mm256_slli_epi32(trits(xb, 16 * g + 4 + jv, vid), 2));
        b = _mm256_or_si256(b, _mm256_slli_epi32(trits(xb, 16 * g + 8 + jv, vid), 4));
        w[jv] = _mm256_or_si256(b, _mm256_slli_epi32(trits(xb, 16 * g + 12 + jv, vid), 6));
      }
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(yb + 32 * g), pack32<false>(w[0], w[1], w[2], w[3]));
    }
    store_half(yb + 64, d);
  }
  return true;
}

// ---- dequantize ---------------------------------------------------------------------

inline __m256i load8_u8(const uint8_t* p) { return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))); }

void dequantize_q8_0(const uint8_t* in, size_t nblocks, float* out) {
  for (size_t i = 0; i < nblocks; ++i) {
    const uint8_t* b = in + i * sizeof(BlockQ8_0);
    float* y = out + i * kQK;
    const __m256 vd = _mm256_set1_ps(load_half(b));
    for (int k = 0; k < 4; ++k) {
      const __m256i q = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(b + 2 + 8 * k)));
      _mm256_storeu_ps(y + 8 * k, _mm256_mul_ps(_mm256_cvtepi32_ps(q), vd));
    }
  }
}

// The 32 codes of a Q4/Q5 block as int32 vectors: nibbles, plus bit 4 from qh if given.
inline void unpack_codes(const uint8_t* qs, const uint8_t* qh, __m256i q[4]) {
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i m = _mm_set1_epi8(0x0F);
  const __m128i lo = _mm_and_si128(b, m), hi = _mm_and_si128(_mm_srli_epi16(b, 4), m);
  q[0] = _mm256_cvtepu8_epi32(lo);
  q[1] = _mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8));
  q[2] = _mm256_cvtepu8_epi32(hi);
  q[3] = _mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8));
  if (qh) {
    uint32_t h;
    std::memcpy(&h, qh, 4);
    const __m256i vh = _mm256_set1_epi32(static_cast<int>(h));
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), one = _mm256_set1_epi32(1);
    for (int k = 0; k < 4; ++k) {
      const __m256i bit = _mm256_and_si256(
          _mm256_srlv_epi32(vh, _mm256_add_epi32(lanes, _mm256_set1_epi32(8 * k))), one);
      q[k] = _mm256_or_si256(q[k], _mm256_slli_epi32(bit, 4));
    }
  }
}

inline void store_sym(float* y, const __m256i q[4], float d, int offset) {
  const __m256 vd = _mm256_set1_ps(d);
  const __m256i vo = _mm256_set1_epi32(offset);
  for (int k = 0; k < 4; ++k)
    _mm256_storeu_ps(y + 8 * k, _mm256_mul_ps(vd, _mm256_cvtepi32_ps(_mm256_sub_epi32(q[k], vo))));
}
inline void store_asym(float* y, const __m256i q[4], float d, float m) {
  const __m256 vd = _mm256_set1_ps(d), vm = _mm256_set1_ps(m);
  for (int k = 0; k < 4; ++k)
    _mm256_storeu_ps(y + 8 * k, _mm256_add_ps(_mm256_mul_ps(vd, _mm256_cvtepi32_ps(q[k])), vm));
}

void dequantize_q4_0(const uint8_t* in, size_t nblocks, float* out) {
  for (size_t i = 0; i < nblocks; ++i) {
    const uint8_t* b = in + i * sizeof(BlockQ4_0);
    __m256i q[4];
    unpack_codes(b + 2, nullptr, q);
    store_sym(out + i * kQK, q, load_half(b), 8);
  }
}
void dequantize_q4_1(const uint8_t* in, size_t nblocks, float* out) {
  for (size_t i = 0; i < nblocks; ++i) {
    const uint8_t* b = in + i * sizeof(BlockQ4_1);
    __m256i q[4];
    unpack_codes(b + 4, nullptr, q);
    store_asym(out + i * kQK, q, load_half(b), load_half(b + 2));
  }
}
void dequantize_q5_0(const uint8_t* in, size_t nblocks, float* out) {
  for (size_t i = 0; i < nblocks; ++i) {
    const uint8_t* b = in + i * sizeof(BlockQ5_0);
    __m256i q[4];
    unpack_codes(b + 6, b + 2, q);
    store_sym(out + i * kQK, q, load_half(b), 16);
  }
}
void dequantize_q5_1(const uint8_t* in, size_t nblocks, float* out) {
  for (size_t i = 0; i < nblocks; ++i) {
    const uint8_t* b = in + i * sizeof(BlockQ5_1);
    __m256i q[4];
    unpack_codes(b + 8, b + 4, q);
    store_asym(out + i * kQK, q, load_half(b), load_half(b + 2));
  }
}

// d * (trit - 1) for 8 values.
inline void store_trits(float* y, __m256i t, __m256 vd) {
  _mm256_storeu_ps(y, _mm256_mul_ps(vd, _mm256_cvtepi32_ps(_mm256_sub_epi32(t, _mm256_set1_epi32(1)))));
}

void dequantize_tq1_0(const uint8_t* in, size_t nblocks, float* out) {
  const __m256i byte = _mm256_set1_epi32(0xFF);
  for (size_t i = 0; i < nblocks; ++i) {
    const uint8_t* b = in + i * sizeof(BlockTQ1_0);
    float* y = out + i * kQK_K;
    const float d = load_half(b + 52);
    const __m256 vd = _mm256_set1_ps(d);
    // Trit n of byte v: ((v * 3^n mod 256) * 3) >> 8. Bytes 0..31 -> values 32n + m,
    // bytes 32..47 -> 160 + 16n + m.
    for (int c = 0; c < 6; ++c) {
      const int base = c < 4 ? 8 * c : 160 + 8 * (c - 4), stride = c < 4 ? 32 : 16;
      __m256i v = load8_u8(b + (c < 4 ? 8 * c : 32 + 8 * (c - 4)));
      for (int n = 0; n < 5; ++n) {
        if (n) v = _mm256_and_si256(mul3(v), byte);
        store_trits(y + base + stride * n, _mm256_srli_epi32(mul3(v), 8), vd);
      }
    }
    for (int n = 0; n < 4; ++n)
      for (int j = 0; j < 4; ++j) y[240 + 4 * n + j] = d * static_cast<float>(tq1_trit(b[48 + j], n) - 1);
  }
}

void dequantize_tq2_0(const uint8_t* in, size_t nblocks, float* out) {
  const __m256i three = _mm256_set1_epi32(3);
  for (size_t i = 0; i < nblocks; ++i) {
    const uint8_t* b = in + i * sizeof(BlockTQ2_0);
    float* y = out + i * kQK_K;
    const __m256 vd = _mm256_set1_ps(load_half(b + 64));
    for (int g = 0; g < 2; ++g)
      for (int jv = 0; jv < 4; ++jv) {
        const __m256i v = load8_u8(b + 32 * g + 8 * jv);
        for (int l = 0; l < 4; ++l)
          store_trits(y + 128 * g + 32 * l + 8 * jv, _mm256_and_si256(_mm256_srli_epi32(v, 2 * l), three), vd);
      }
  }
}

}  // namespace

// ---- K-quants: Q4_K / Q5_K without an importance matrix ------------------------------
//
// ggml's make_qkx2_quants runs once per 32-value sub-block; its sums are left-to-right
// loops over the sub-block, so the SIMD lanes here are the 8 sub-blocks of a
// super-block (lane j = sub-block j), and each lane runs ggml's loop in ggml's
// order: the same float32 operations, 8 sub-blocks at a time. min/max scans use
// min_ps/max_ps, which are `x < m ? x : m` (ggml's `if (x < min) min = x`).

inline __m256i nearest_int8(__m256 v) {  // ggml's nearest_int on 8 lanes
  const __m256 t = _mm256_add_ps(v, _mm256_set1_ps(12582912.f));
  return _mm256_sub_epi32(_mm256_and_si256(_mm256_castps_si256(t), _mm256_set1_epi32(0x007fffff)),
                          _mm256_set1_epi32(0x00400000));
}

// kX3: make_qkx3_quants (the imatrix path: weights qw * sqrt(sigma2 + x^2), its sums
// in sw_out; a sub-block is degenerate when !(max > min)); else make_qkx2_quants
// with ggml's ref weights: av_x + |x| (kAvX, Q4_K/Q5_K) or |x| (Q2_K). Sub-blocks of kN
// values (lane j: x + kN * j); kMad: the absolute error (Q2_K's ref) instead of the square.
template <int kNmax, int kNstep, bool kX3, int kN = 32, bool kMad = false, bool kAvX = true>
inline void qkx2_lanes(const float* x, float rmin, float rdelta, float* scales, float* mins, uint8_t* L,
                       const float* qw = nullptr, float sigma2 = 0, float* sw_out = nullptr) {
  const __m256i idx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(kN));
  __m256 X[kN], W[kN];
  for (int i = 0; i < kN; ++i) X[i] = _mm256_i32gather_ps(x + i, idx, 4);
  const __m256 zero = _mm256_setzero_ps(), sign = _mm256_set1_ps(-0.0f);
  if (kX3) {
    __m256 sw = zero;
    for (int i = 0; i < kN; ++i) {
      W[i] = _mm256_mul_ps(_mm256_i32gather_ps(qw + i, idx, 4),
                           _mm256_sqrt_ps(_mm256_add_ps(_mm256_set1_ps(sigma2), _mm256_mul_ps(X[i], X[i]))));
      sw = _mm256_add_ps(sw, W[i]);
    }
    _mm256_storeu_ps(sw_out, sw);
  } else if (kAvX) {
    // weights: av_x + |x|, av_x = sqrt(sum x^2 / kN)
    __m256 sx2 = zero;
    for (int i = 0; i < kN; ++i) sx2 = _mm256_add_ps(sx2, _mm256_mul_ps(X[i], X[i]));
    const __m256 av_x = _mm256_sqrt_ps(_mm256_div_ps(sx2, _mm256_set1_ps(static_cast<float>(kN))));
    for (int i = 0; i < kN; ++i) W[i] = _mm256_add_ps(av_x, _mm256_andnot_ps(sign, X[i]));
  } else {
    for (int i = 0; i < kN; ++i) W[i] = _mm256_andnot_ps(sign, X[i]);
  }
  auto err = [&](__m256 diff) { return kMad ? _mm256_andnot_ps(sign, diff) : _mm256_mul_ps(diff, diff); };
  __m256 mn = X[0], mx = X[0], sum_w = W[0], sum_x = _mm256_mul_ps(W[0], X[0]);
  for (int i = 1; i < kN; ++i) {
    mn = _mm256_min_ps(X[i], mn);
    mx = _mm256_max_ps(X[i], mx);
    sum_w = _mm256_add_ps(sum_w, W[i]);
    sum_x = _mm256_add_ps(sum_x, _mm256_mul_ps(W[i], X[i]));
  }
  mn = _mm256_blendv_ps(mn, zero, _mm256_cmp_ps(mn, zero, _CMP_GT_OQ));
  const __m256 degenerate = kX3 ? _mm256_cmp_ps(mx, mn, _CMP_NGT_UQ) : _mm256_cmp_ps(mx, mn, _CMP_EQ_OQ);
  const __m256 min0 = mn;
  const __m256i top = _mm256_set1_epi32(kNmax), izero = _mm256_setzero_si256();
  __m256 iscale = _mm256_div_ps(_mm256_set1_ps(static_cast<float>(kNmax)), _mm256_sub_ps(mx, mn));
  __m256 scale = _mm256_div_ps(_mm256_set1_ps(1.0f), iscale);
  __m256i Lv[kN], La[kN];
  __m256 best = zero;
  for (int i = 0; i < kN; ++i) {
    const __m256i l = _mm256_max_epi32(izero, _mm256_min_epi32(top, nearest_int8(_mm256_mul_ps(iscale, _mm256_sub_ps(X[i], mn)))));
    Lv[i] = l;
    __m256 diff = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(scale, _mm256_cvtepi32_ps(l)), mn), X[i]);
    best = _mm256_add_ps(best, _mm256_mul_ps(W[i], err(diff)));
  }
  for (int is = 0; is <= kNstep; ++is) {
    const float num = rmin + rdelta * static_cast<float>(is) + static_cast<float>(kNmax);
    iscale = _mm256_div_ps(_mm256_set1_ps(num), _mm256_sub_ps(mx, mn));
    __m256 sum_l = zero, sum_l2 = zero, sum_xl = zero;
    for (int i = 0; i < kN; ++i) {
      const __m256i l = _mm256_max_epi32(izero, _mm256_min_epi32(top, nearest_int8(_mm256_mul_ps(iscale, _mm256_sub_ps(X[i], mn)))));
      La[i] = l;
      const __m256 wl = _mm256_mul_ps(W[i], _mm256_cvtepi32_ps(l));
      sum_l = _mm256_add_ps(sum_l, wl);
      sum_l2 = _mm256_add_ps(sum_l2, _mm256_mul_ps(wl, _mm256_cvtepi32_ps(l)));
      sum_xl = _mm256_add_ps(sum_xl, _mm256_mul_ps(wl, X[i]));
    }
    const __m256 D = _mm256_sub_ps(_mm256_mul_ps(sum_w, sum_l2), _mm256_mul_ps(sum_l, sum_l));
    const __m256 okD = _mm256_andnot_ps(degenerate, _mm256_cmp_ps(D, zero, _CMP_GT_OQ));
    if (_mm256_movemask_ps(okD) == 0) continue;
    __m256 this_scale = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(sum_w, sum_xl), _mm256_mul_ps(sum_x, sum_l)), D);
    __m256 this_min = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(sum_l2, sum_x), _mm256_mul_ps(sum_l, sum_xl)), D);
    const __m256 pos = _mm256_cmp_ps(this_min, zero, _CMP_GT_OQ);
    this_min = _mm256_blendv_ps(this_min, zero, pos);
    this_scale = _mm256_blendv_ps(this_scale, _mm256_div_ps(sum_xl, sum_l2), pos);
    __m256 cur = zero;
    for (int i = 0; i < kN; ++i) {
      __m256 diff = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(this_scale, _mm256_cvtepi32_ps(La[i])), this_min), X[i]);
      cur = _mm256_add_ps(cur, _mm256_mul_ps(W[i], err(diff)));
    }
    const __m256 better = _mm256_and_ps(okD, _mm256_cmp_ps(cur, best, _CMP_LT_OQ));
    const int bm = _mm256_movemask_ps(better);
    if (!bm) continue;
    const __m256i bi = _mm256_castps_si256(better);
    for (int i = 0; i < kN; ++i) Lv[i] = _mm256_blendv_epi8(Lv[i], La[i], bi);
    best = _mm256_blendv_ps(best, cur, better);
    scale = _mm256_blendv_ps(scale, this_scale, better);
    mn = _mm256_blendv_ps(mn, this_min, better);
  }
  scale = _mm256_blendv_ps(scale, zero, degenerate);
  mn = _mm256_blendv_ps(mn, min0, degenerate);
  _mm256_storeu_ps(scales, scale);
  _mm256_storeu_ps(mins, _mm256_xor_ps(mn, sign));  // the_min = -min
  alignas(32) int32_t lanes[8];
  const __m256i dz = _mm256_castps_si256(degenerate);
  for (int i = 0; i < kN; ++i) {
    _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), _mm256_andnot_si256(dz, Lv[i]));
    for (int j = 0; j < 8; ++j) L[kN * j + i] = static_cast<uint8_t>(lanes[j]);
  }
}

template <int kNmax>
inline void qk45_requantize_avx2(const float* x, const uint8_t* d_in, const uint8_t* dmin_in, const uint8_t* sc,
                                 uint8_t* L) {
  const float d_all = load_fp16(d_in), m_all = load_fp16(dmin_in);
  const __m256i top = _mm256_set1_epi32(kNmax), izero = _mm256_setzero_si256();
  for (int j = 0; j < 8; ++j) {
    uint8_t s, m;
    kq::get_scale_min_k4(j, sc, &s, &m);
    const float d = d_all * static_cast<float>(s);
    if (!d) continue;
    const __m256 dv = _mm256_set1_ps(d), dm = _mm256_set1_ps(m_all * static_cast<float>(m));
    for (int k = 0; k < 32; k += 8) {
      const __m256 v = _mm256_div_ps(_mm256_add_ps(_mm256_loadu_ps(x + 32 * j + k), dm), dv);
      const __m256i l = _mm256_max_epi32(izero, _mm256_min_epi32(top, nearest_int8(v)));
      const __m128i p16 = _mm_packs_epi32(_mm256_castsi256_si128(l), _mm256_extracti128_si256(l, 1));
      _mm_storel_epi64(reinterpret_cast<__m128i*>(L + 32 * j + k), _mm_packus_epi16(p16, p16));
    }
  }
}

template <int kNmax>
inline void qk45_fit_avx2(const float* x, const float* qw, uint8_t* L, uint8_t* d, uint8_t* dmin, uint8_t* sc) {
  float scales[8], mins[8];
  std::memset(sc, 0, 12);
  if (qw) {
    float sw[8];
    const float sigma2 = 2 * kq::sum_sq(x, kQK_K) / kQK_K;
    qkx2_lanes<kNmax, 36, true>(x, -0.9f, 0.05f, scales, mins, L, qw, sigma2, sw);
    kq::qk45_codes_imatrix(scales, mins, sw, d, dmin, sc);
  } else {
    if (kNmax == 15) qkx2_lanes<kNmax, 20, false>(x, -1.f, 0.1f, scales, mins, L);
    else qkx2_lanes<kNmax, 15, false>(x, -0.5f, 0.1f, scales, mins, L);
    kq::qk45_codes_ref(scales, mins, d, dmin, sc);
  }
  qk45_requantize_avx2<kNmax>(x, d, dmin, sc, L);
}

void quantize_block_q4_K_avx2(const float* x, const float* qw, uint8_t* out) {
  BlockQ4_K* y = reinterpret_cast<BlockQ4_K*>(out);
  uint8_t L[kQK_K];
  qk45_fit_avx2<15>(x, qw, L, y->d, y->dmin, y->scales);
  kq::pack_q4_K(L, y);
}

void quantize_block_q5_K_avx2(const float* x, const float* qw, uint8_t* out) {
  BlockQ5_K* y = reinterpret_cast<BlockQ5_K*>(out);
  uint8_t L[kQK_K];
  qk45_fit_avx2<31>(x, qw, L, y->d, y->dmin, y->scales);
  kq::pack_q5_K(L, y);
}

// ---- Q2_K: make_qkx2_quants (nmax 3, absolute error) / make_qkx3_quants, 8 sub-blocks of 16 in the lanes ----

void quantize_block_q2_K_avx2(const float* x, const float* qw, uint8_t* out) {
  BlockQ2_K* y = reinterpret_cast<BlockQ2_K*>(out);
  alignas(32) uint8_t L[kQK_K];
  float scales[16], mins[16];
  if (qw) {
    float sw[16];
    const float sigma2 = kq::sum_sq(x, kQK_K) / kQK_K;
    for (int h = 0; h < 2; ++h)
      qkx2_lanes<3, 36, true, 16, false, false>(x + 128 * h, -0.9f, 0.05f, scales + 8 * h, mins + 8 * h, L + 128 * h,
                                                 qw + 128 * h, sigma2, sw + 8 * h);
    kq::q2_K_codes_imatrix(scales, mins, sw, y);
  } else {
    for (int h = 0; h < 2; ++h)
      qkx2_lanes<3, 15, false, 16, true, false>(x + 128 * h, -0.5f, 0.1f, scales + 8 * h, mins + 8 * h, L + 128 * h);
    kq::q2_K_codes_ref(scales, mins, y);
  }
  // q2k_requantize (a sub-block whose scale is 0 keeps the search's codes)
  const float dm_all = load_fp16(y->d), mm_all = load_fp16(y->dmin);
  const __m256i top = _mm256_set1_epi32(3), izero = _mm256_setzero_si256();
  for (int j = 0; j < 16; ++j) {
    const float d = dm_all * static_cast<float>(y->scales[j] & 0xF);
    if (!d) continue;
    const __m256 dv = _mm256_set1_ps(d), mv = _mm256_set1_ps(mm_all * static_cast<float>(y->scales[j] >> 4));
    for (int k = 0; k < 16; k += 8) {
      const __m256 v = _mm256_div_ps(_mm256_add_ps(_mm256_loadu_ps(x + 16 * j + k), mv), dv);
      const __m256i l = _mm256_max_epi32(izero, _mm256_min_epi32(top, nearest_int8(v)));
      const __m128i p16 = _mm_packs_epi32(_mm256_castsi256_si128(l), _mm256_extracti128_si256(l, 1));
      _mm_storel_epi64(reinterpret_cast<__m128i*>(L + 16 * j + k), _mm_packus_epi16(p16, p16));
    }
  }
  kq::pack_2bit(L, y->qs);
}

// ---- Q6_K: ggml's make_qx_quants (rmse_type 1) with 8 sub-blocks of 16 in the lanes ----

inline void qx32_lanes(const float* x, const float* qw, float* scales, int8_t* L) {
  const __m256i idx = _mm256_setr_epi32(0, 16, 32, 48, 64, 80, 96, 112);
  const __m256 zero = _mm256_setzero_ps(), sign = _mm256_set1_ps(-0.0f);
  const __m256i lo = _mm256_set1_epi32(-32), hi = _mm256_set1_epi32(31);
  __m256 X[16], WX[16], W[16];
  __m256 amax = zero, max = zero;
  for (int i = 0; i < 16; ++i) {
    X[i] = _mm256_i32gather_ps(x + i, idx, 4);
    W[i] = qw ? _mm256_i32gather_ps(qw + i, idx, 4) : _mm256_mul_ps(X[i], X[i]);
    WX[i] = _mm256_mul_ps(W[i], X[i]);
    const __m256 ax = _mm256_andnot_ps(sign, X[i]);
    const __m256 gt = _mm256_cmp_ps(ax, amax, _CMP_GT_OQ);
    amax = _mm256_blendv_ps(amax, ax, gt);
    max = _mm256_blendv_ps(max, X[i], gt);
  }
  const __m256 zero_lane = _mm256_cmp_ps(amax, _mm256_set1_ps(kq::kGroupMaxEps), _CMP_LT_OQ);
  __m256i Lv[16];
  auto sums = [&](__m256 iscale, __m256i* Lout, __m256* slx, __m256* sl2) {
    __m256 a = zero, b = zero;
    for (int i = 0; i < 16; ++i) {
      const __m256i l = _mm256_max_epi32(lo, _mm256_min_epi32(hi, nearest_int8(_mm256_mul_ps(iscale, X[i]))));
      if (Lout) Lout[i] = l;
      const __m256 fl = _mm256_cvtepi32_ps(l);
      a = _mm256_add_ps(a, _mm256_mul_ps(WX[i], fl));
      b = _mm256_add_ps(b, _mm256_mul_ps(_mm256_mul_ps(W[i], fl), fl));
    }
    *slx = a;
    *sl2 = b;
  };
  __m256 sumlx, suml2;
  sums(_mm256_div_ps(_mm256_set1_ps(-32.0f), max), Lv, &sumlx, &suml2);
  __m256 scale = _mm256_and_ps(_mm256_cmp_ps(suml2, zero, _CMP_NEQ_UQ), _mm256_div_ps(sumlx, suml2));
  __m256 best = _mm256_mul_ps(scale, sumlx);
  __m256i La[16];
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    const float num = -(32.0f + 0.1f * static_cast<float>(is));
    __m256 slx, sl2;
    sums(_mm256_div_ps(_mm256_set1_ps(num), max), La, &slx, &sl2);
    const __m256 better = _mm256_and_ps(_mm256_cmp_ps(sl2, zero, _CMP_GT_OQ),
                                        _mm256_cmp_ps(_mm256_mul_ps(slx, slx), _mm256_mul_ps(best, sl2), _CMP_GT_OQ));
    if (!_mm256_movemask_ps(better)) continue;
    const __m256i bi = _mm256_castps_si256(better);
    for (int i = 0; i < 16; ++i) Lv[i] = _mm256_blendv_epi8(Lv[i], La[i], bi);
    scale = _mm256_blendv_ps(scale, _mm256_div_ps(slx, sl2), better);
    best = _mm256_blendv_ps(best, _mm256_mul_ps(scale, slx), better);
  }
  scale = _mm256_blendv_ps(scale, zero, zero_lane);
  _mm256_storeu_ps(scales, scale);
  const __m256i zl = _mm256_castps_si256(zero_lane), off = _mm256_set1_epi32(32);
  alignas(32) int32_t lanes[8];
  for (int i = 0; i < 16; ++i) {
    _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), _mm256_andnot_si256(zl, _mm256_add_epi32(Lv[i], off)));
    for (int j = 0; j < 8; ++j) L[16 * j + i] = static_cast<int8_t>(lanes[j]);
  }
}

void quantize_block_q6_K_avx2(const float* x, const float* qw, uint8_t* out) {
  int8_t L[kQK_K];
  float scales[16];
  qx32_lanes(x, qw, scales, L);
  qx32_lanes(x + 128, qw ? qw + 128 : nullptr, scales + 8, L + 128);
  kq::q6_K_finish(x, scales, L, out);
}

// ---- IQ4_XS: quantize_row_iq4_nl_impl (ntry 7) with the 8 sub-blocks in the lanes ------

// best_index_int8(16, kvalues_iq4nl, v) on 8 lanes: the binary search lands on the
// mu with val[mu-1] <= v < val[mu], i.e. 1 + #{k in 1..14 : !(v < val[k])} (a NaN
// counts as above all, as the C search moves up on it), then the nearer of the two.
inline __m256i iq4_index8(__m256 v) {
  __m256i cnt = _mm256_set1_epi32(1);
  for (int k = 1; k < 15; ++k)
    cnt = _mm256_sub_epi32(cnt, _mm256_castps_si256(_mm256_cmp_ps(
                                    v, _mm256_set1_ps(static_cast<float>(kq::kIq4nlValues[k])), _CMP_NLT_UQ)));
  const __m256 tlo = _mm256_setr_ps(-127, -104, -83, -65, -49, -35, -22, -10);
  const __m256 thi = _mm256_setr_ps(1, 13, 25, 38, 53, 69, 89, 113);
  auto lookup = [&](__m256i i) {
    const __m256 a = _mm256_permutevar8x32_ps(tlo, i), b = _mm256_permutevar8x32_ps(thi, i);
    return _mm256_blendv_ps(a, b, _mm256_castsi256_ps(_mm256_cmpgt_epi32(i, _mm256_set1_epi32(7))));
  };
  const __m256i mu1 = _mm256_sub_epi32(cnt, _mm256_set1_epi32(1));
  const __m256 lo = lookup(mu1), hi = lookup(cnt);
  const __m256 pick_lo = _mm256_cmp_ps(_mm256_sub_ps(v, lo), _mm256_sub_ps(hi, v), _CMP_LT_OQ);
  __m256i idx = _mm256_add_epi32(cnt, _mm256_castps_si256(pick_lo));  // -1 where the lower one is nearer
  idx = _mm256_andnot_si256(_mm256_castps_si256(_mm256_cmp_ps(v, _mm256_set1_ps(-127.f), _CMP_LE_OQ)), idx);
  idx = _mm256_blendv_epi8(idx, _mm256_set1_epi32(15),
                           _mm256_castps_si256(_mm256_cmp_ps(v, _mm256_set1_ps(113.f), _CMP_GE_OQ)));
  return idx;
}

inline __m256 iq4_value8(__m256i i) {
  const __m256 tlo = _mm256_setr_ps(-127, -104, -83, -65, -49, -35, -22, -10);
  const __m256 thi = _mm256_setr_ps(1, 13, 25, 38, 53, 69, 89, 113);
  const __m256 a = _mm256_permutevar8x32_ps(tlo, i), b = _mm256_permutevar8x32_ps(thi, i);
  return _mm256_blendv_ps(a, b, _mm256_castsi256_ps(_mm256_cmpgt_epi32(i, _mm256_set1_epi32(7))));
}

// quantize_row_iq4_nl_impl's per-32 search (ntry 7) for 8 sub-blocks in the lanes:
// X[i], W[i] hold value i of each; returns the scales (0 for an all-tiny sub-block).
inline __m256 iq4_fit_lanes(const __m256* X, const __m256* W) {
  const __m256 zero = _mm256_setzero_ps(), sign = _mm256_set1_ps(-0.0f);
  __m256 amax = zero, max = zero;
  for (int i = 0; i < 32; ++i) {
    const __m256 ax = _mm256_andnot_ps(sign, X[i]);
    const __m256 gt = _mm256_cmp_ps(ax, amax, _CMP_GT_OQ);
    amax = _mm256_blendv_ps(amax, ax, gt);
    max = _mm256_blendv_ps(max, X[i], gt);
  }
  const __m256 zero_lane = _mm256_cmp_ps(amax, _mm256_set1_ps(kq::kGroupMaxEps), _CMP_LT_OQ);
  auto sums = [&](__m256 id, __m256* sqx, __m256* sq2) {
    __m256 a = zero, b = zero;
    for (int i = 0; i < 32; ++i) {
      const __m256 q = iq4_value8(iq4_index8(_mm256_mul_ps(id, X[i])));
      const __m256 wq = _mm256_mul_ps(W[i], q);
      a = _mm256_add_ps(a, _mm256_mul_ps(wq, X[i]));
      b = _mm256_add_ps(b, _mm256_mul_ps(wq, q));
    }
    *sqx = a;
    *sq2 = b;
  };
  __m256 d = _mm256_div_ps(_mm256_xor_ps(max, sign), _mm256_set1_ps(-127.f));
  __m256 sumqx, sumq2;
  sums(_mm256_div_ps(_mm256_set1_ps(1.0f), d), &sumqx, &sumq2);
  d = _mm256_and_ps(_mm256_cmp_ps(sumq2, zero, _CMP_GT_OQ), _mm256_div_ps(sumqx, sumq2));
  __m256 best = _mm256_mul_ps(d, sumqx);
  for (int itry = -7; itry <= 7; ++itry) {
    const __m256 id = _mm256_div_ps(_mm256_set1_ps(static_cast<float>(itry - 127)), max);
    __m256 sqx, sq2;
    sums(id, &sqx, &sq2);
    const __m256 better = _mm256_and_ps(_mm256_cmp_ps(sq2, zero, _CMP_GT_OQ),
                                        _mm256_cmp_ps(_mm256_mul_ps(sqx, sqx), _mm256_mul_ps(best, sq2), _CMP_GT_OQ));
    d = _mm256_blendv_ps(d, _mm256_div_ps(sqx, sq2), better);
    best = _mm256_blendv_ps(best, _mm256_mul_ps(d, sqx), better);
  }
  return _mm256_blendv_ps(d, zero, zero_lane);
}

inline void iq4_codes32(const float* x, float id, uint8_t* L) {  // best_index_int8(id * x) for 32 values
  const __m256 v = _mm256_set1_ps(id);
  for (int k = 0; k < 32; k += 8) {
    const __m256i q = iq4_index8(_mm256_mul_ps(v, _mm256_loadu_ps(x + k)));
    const __m128i p16 = _mm_packs_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(L + k), _mm_packus_epi16(p16, p16));
  }
}

// IQ4_NL: 8 blocks of 32 at a time (each block's own sigma2 and scale), the rest scalar.
bool quantize_iq4_nl_avx2(const float* x, size_t nblocks, const float* qw, uint8_t* out) {
  for (size_t i = 0; i < nblocks * kQK; ++i)
    if ((f32_bits(x[i]) & 0x7f800000u) == 0x7f800000u) return false;
  const __m256i gidx = _mm256_setr_epi32(0, 32, 64, 96, 128, 160, 192, 224);
  size_t b = 0;
  for (; b + 8 <= nblocks; b += 8) {
    const float* xb = x + kQK * b;
    const float* wb = qw ? qw + kQK * b : nullptr;
    __m256 X[32], W[32], s2 = _mm256_setzero_ps();
    for (int i = 0; i < 32; ++i) {
      X[i] = _mm256_i32gather_ps(xb + i, gidx, 4);
      s2 = _mm256_add_ps(s2, _mm256_mul_ps(X[i], X[i]));
    }
    const __m256 sigma2 = _mm256_mul_ps(s2, _mm256_set1_ps(2.f / 32));
    for (int i = 0; i < 32; ++i) {
      const __m256 xx = _mm256_mul_ps(X[i], X[i]);
      W[i] = wb ? _mm256_mul_ps(_mm256_i32gather_ps(wb + i, gidx, 4), _mm256_sqrt_ps(_mm256_add_ps(sigma2, xx))) : xx;
    }
    float d[8];
    _mm256_storeu_ps(d, iq4_fit_lanes(X, W));
    for (int j = 0; j < 8; ++j) {
      uint8_t* y = out + sizeof(BlockIQ4_NL) * (b + j);
      store_fp16(y, d[j]);
      uint8_t L[32];
      iq4_codes32(xb + 32 * j, d[j] ? 1 / d[j] : 0, L);
      kq::pack_iq4(L, 32, y + 2);
    }
  }
  for (; b < nblocks; ++b)
    kq::quantize_block_iq4_nl(x + kQK * b, qw ? qw + kQK * b : nullptr, out + sizeof(BlockIQ4_NL) * b);
  return true;
}

void quantize_block_iq4_xs_avx2(const float* x, const float* qw, uint8_t* out) {
  BlockIQ4_XS* y = reinterpret_cast<BlockIQ4_XS*>(out);
  float sigma2 = kq::sum_sq(x, kQK_K);
  sigma2 *= 2.f / kQK_K;
  const __m256i gidx = _mm256_setr_epi32(0, 32, 64, 96, 128, 160, 192, 224);
  __m256 X[32], W[32];
  for (int i = 0; i < 32; ++i) {
    X[i] = _mm256_i32gather_ps(x + i, gidx, 4);
    const __m256 xx = _mm256_mul_ps(X[i], X[i]);
    W[i] = qw ? _mm256_mul_ps(_mm256_i32gather_ps(qw + i, gidx, 4), _mm256_sqrt_ps(_mm256_add_ps(_mm256_set1_ps(sigma2), xx)))
              : xx;
  }
  const __m256 d = iq4_fit_lanes(X, W);
  float scales[8];
  _mm256_storeu_ps(scales, d);
  float max_scale = 0, amax_scale = 0;
  for (int ib = 0; ib < 8; ++ib) {
    const float abs_d = std::fabs(scales[ib]);
    if (abs_d > amax_scale) { amax_scale = abs_d; max_scale = scales[ib]; }
  }
  const float dd = -max_scale / 32;
  store_fp16(y->d, dd);
  const float id = dd ? 1 / dd : 0.f;
  uint16_t scales_h = 0;
  uint8_t L[kQK_K];
  for (int ib = 0; ib < 8; ++ib) {
    const float dl = kq::iq4_xs_sub_scale(ib, dd, id, scales[ib], y, &scales_h);
    iq4_codes32(x + 32 * ib, dl ? 1 / dl : 0.f, L + 32 * ib);
  }
  kq::iq4_xs_store_scales_h(y, scales_h);
  kq::pack_iq4(L, kQK_K, y->qs);
}

// ---- Q6_K decoder: (d * sc) * q, 8 values per vector (one sub-block scale each) --------

void dequantize_q6_K_avx2(const uint8_t* in, size_t nblocks, float* out) {
  const __m256i m4 = _mm256_set1_epi32(0xF), m3 = _mm256_set1_epi32(3), off = _mm256_set1_epi32(32);
  for (size_t b = 0; b < nblocks; ++b) {
    const BlockQ6_K* x = reinterpret_cast<const BlockQ6_K*>(in + b * sizeof(BlockQ6_K));
    float* y = out + b * kQK_K;
    const float d = load_fp16(x->d);
    for (int n = 0; n < 2; ++n) {
      const uint8_t* ql = x->ql + 64 * n;
      const uint8_t* qh = x->qh + 32 * n;
      const int8_t* sc = x->scales + 8 * n;
      float* yy = y + 128 * n;
      for (int l0 = 0; l0 < 32; l0 += 8) {
        const int is = l0 / 16;
        const __m256i a = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(ql + l0)));
        const __m256i c = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(ql + l0 + 32)));
        const __m256i h = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(qh + l0)));
        const __m256i q1 = _mm256_sub_epi32(_mm256_or_si256(_mm256_and_si256(a, m4), _mm256_slli_epi32(_mm256_and_si256(h, m3), 4)), off);
        const __m256i q2 = _mm256_sub_epi32(_mm256_or_si256(_mm256_and_si256(c, m4), _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(h, 2), m3), 4)), off);
        const __m256i q3 = _mm256_sub_epi32(_mm256_or_si256(_mm256_srli_epi32(a, 4), _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(h, 4), m3), 4)), off);
        const __m256i q4 = _mm256_sub_epi32(_mm256_or_si256(_mm256_srli_epi32(c, 4), _mm256_slli_epi32(_mm256_srli_epi32(h, 6), 4)), off);
        _mm256_storeu_ps(yy + l0 + 0, _mm256_mul_ps(_mm256_set1_ps(d * static_cast<float>(sc[is + 0])), _mm256_cvtepi32_ps(q1)));
        _mm256_storeu_ps(yy + l0 + 32, _mm256_mul_ps(_mm256_set1_ps(d * static_cast<float>(sc[is + 2])), _mm256_cvtepi32_ps(q2)));
        _mm256_storeu_ps(yy + l0 + 64, _mm256_mul_ps(_mm256_set1_ps(d * static_cast<float>(sc[is + 4])), _mm256_cvtepi32_ps(q3)));
        _mm256_storeu_ps(yy + l0 + 96, _mm256_mul_ps(_mm256_set1_ps(d * static_cast<float>(sc[is + 6])), _mm256_cvtepi32_ps(q4)));
      }
    }
  }
}

// The legacy formats' kernels take no importance weights.
template <bool (*kFn)(const float*, size_t, uint8_t*)>
bool no_qw(const float* x, size_t nblocks, const float*, uint8_t* out) {
  return kFn(x, nblocks, out);
}

const GgufKernels gguf_avx2 = {
    {
        no_qw<quantize_q8_0>,
        kq::legacy_with_imatrix<no_qw<quantize_q4_0>, kq::quantize_row_legacy_imatrix<8, false>>,
        kq::legacy_with_imatrix<no_qw<quantize_q4_1>, kq::quantize_row_legacy_imatrix<15, true>>,
        kq::legacy_with_imatrix<no_qw<quantize_q5_0>, kq::quantize_row_legacy_imatrix<16, false>>,
        kq::legacy_with_imatrix<no_qw<quantize_q5_1>, kq::quantize_row_legacy_imatrix<31, true>>,
        no_qw<quantize_tq1_0>, no_qw<quantize_tq2_0>,
        kq::quantize_blocks_w<kQK_K, sizeof(BlockQ2_K), quantize_block_q2_K_avx2>,
        kq::quantize_blocks_w<kQK_K, sizeof(BlockQ3_K), kq::quantize_block_q3_K>,
        kq::quantize_blocks_w<kQK_K, sizeof(BlockQ4_K), quantize_block_q4_K_avx2>,
        kq::quantize_blocks_w<kQK_K, sizeof(BlockQ5_K), quantize_block_q5_K_avx2>,
        kq::quantize_blocks_w<kQK_K, sizeof(BlockQ6_K), quantize_block_q6_K_avx2>,
        kq::quantize_blocks_w<kQK_K, sizeof(BlockQ8_K), kq::quantize_block_q8_K>,
        quantize_iq4_nl_avx2,
        kq::quantize_blocks_w<kQK_K, sizeof(BlockIQ4_XS), quantize_block_iq4_xs_avx2>,
    },
    {
        dequantize_q8_0, dequantize_q4_0, dequantize_q4_1, dequantize_q5_0, dequantize_q5_1, dequantize_tq1_0,
        dequantize_tq2_0,
        kq::dequantize_blocks<kQK_K, sizeof(BlockQ2_K), kq::dequantize_block_q2_K>,
        kq::dequantize_blocks<kQK_K, sizeof(BlockQ3_K), kq::dequantize_block_q3_K>,
        kq::dequantize_blocks<kQK_K, sizeof(BlockQ4_K), kq::dequantize_block_q4_K>,
        kq::dequantize_blocks<kQK_K, sizeof(BlockQ5_K), kq::dequantize_block_q5_K>,
        dequantize_q6_K_avx2,
        kq::dequantize_blocks<kQK_K, sizeof(BlockQ8_K), kq::dequantize_block_q8_K>,
        kq::dequantize_blocks<kQK, sizeof(BlockIQ4_NL), kq::dequantize_block_iq4_nl>,
        kq::dequantize_blocks<kQK_K, sizeof(BlockIQ4_XS), kq::dequantize_block_iq4_xs>,
        kq::dequantize_blocks<kQK_K, sizeof(BlockIQ2_XXS), iq::dequantize_block_iq2_xxs>,
        kq::dequantize_blocks<kQK_K, sizeof(BlockIQ2_XS), iq::dequantize_block_iq2_xs>,
        kq::dequantize_blocks<kQK_K, sizeof(BlockIQ2_S), iq::dequantize_block_iq2_s>,
        kq::dequantize_blocks<kQK_K, sizeof(BlockIQ3_XXS), iq::dequantize_block_iq3_xxs>,
        kq::dequantize_blocks<kQK_K, sizeof(BlockIQ3_S), iq::dequantize_block_iq3_s>,
        kq::dequantize_blocks<kQK_K, sizeof(BlockIQ1_S), iq::dequantize_block_iq1_s>,
        kq::dequantize_blocks<kQK_K, sizeof(BlockIQ1_M), iq::dequantize_block_iq1_m>,
        kq::dequantize_blocks<kQK, sizeof(BlockMXFP4), iq::dequantize_block_mxfp4>,
        kq::dequantize_blocks<1, 2, iq::dequantize_block_f16>,
        kq::dequantize_blocks<1, 2, iq::dequantize_block_bf16>,
    },
    {
        nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,  // legacy formats
        nullptr,                                                         // Q2_K
        nullptr,                                                         // Q3_K
        kq::quantize_blocks_w<kQK_K, sizeof(BlockQ4_K), srch::search_block_q4_K>,
        kq::quantize_blocks_w<kQK_K, sizeof(BlockQ5_K), srch::search_block_q5_K>,
        kq::quantize_blocks_w<kQK_K, sizeof(BlockQ6_K), srch::search_block_q6_K>,
        nullptr,  // Q8_K
        kq::quantize_blocks_w<kQK, sizeof(BlockIQ4_NL), srch::search_block_iq4_nl>,
        kq::quantize_blocks_w<kQK_K, sizeof(BlockIQ4_XS), srch::search_block_iq4_xs>,
    },
};

}  // namespace lowbit
