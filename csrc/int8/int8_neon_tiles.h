// int8 GEMM register tiles shared by the aarch64 variants (int8_neon.cpp,
// int8_dotprod.cpp, int8_i8mm.cpp include it; each compiles it with its own flags).
//
//  - tile_i16 (int16 layout, any zero points): per pair of inputs the 32-byte panel
//    row is de-interleaved with ld2 into B[2kp] and B[2kp+1] for 16 channels, widened
//    to int16 and multiplied by the row's pair (a0, a1) with smlal by element: 4
//    int32 accumulators per row, 8 smlal (32 multiply-adds) per row and pair. Exact:
//    |A - za| <= 255 and |B| <= 128, int32 accumulation wraps like the reference's.
//  - tile_u7_neon (u7 layout, no dot product): smull of 8 weight bytes (2 channels x 4
//    inputs, u in [0, 127]) by the row's 4 inputs repeated, then sadalp into int32
//    pairs: |u * a| <= 127 * 128 fits int16. Rows go 3 at a time (8 accumulators each).
#pragma once
#include <arm_neon.h>

#include <cstring>

#include "int8/int8.h"
#include "int8/int8_ops.h"

namespace lowbit {
namespace {

constexpr size_t kInt8NR = 16;  // output channels per panel of these tiles

template <int MR>
inline void tile_i16_mr(const int16_t* a, size_t lda, const int8_t* panel, size_t kpairs, int32_t* c) {
  int32x4_t acc[MR][4];
  for (int r = 0; r < MR; ++r)
    for (int g = 0; g < 4; ++g) acc[r][g] = vdupq_n_s32(0);
  for (size_t kp = 0; kp < kpairs; ++kp) {
    int8x16x2_t b = vld2q_s8(panel + 32 * kp);  // val[0]: B[., 2kp], val[1]: B[., 2kp + 1]
    int16x8_t e0 = vmovl_s8(vget_low_s8(b.val[0])), e1 = vmovl_high_s8(b.val[0]);
    int16x8_t o0 = vmovl_s8(vget_low_s8(b.val[1])), o1 = vmovl_high_s8(b.val[1]);
    for (int r = 0; r < MR; ++r) {
      int16x4_t av = vreinterpret_s16_s32(vld1_dup_s32(reinterpret_cast<const int32_t*>(a + r * lda + 2 * kp)));
      acc[r][0] = vmlal_lane_s16(acc[r][0], vget_low_s16(e0), av, 0);
      acc[r][1] = vmlal_lane_s16(acc[r][1], vget_high_s16(e0), av, 0);
      acc[r][2] = vmlal_lane_s16(acc[r][2], vget_low_s16(e1), av, 0);
      acc[r][3] = vmlal_lane_s16(acc[r][3], vget_high_s16(e1), av, 0);
      acc[r][0] = vmlal_lane_s16(acc[r][0], vget_low_s16(o0), av, 1);
      acc[r][1] = vmlal_lane_s16(acc[r][1], vget_high_s16(o0), av, 1);
      acc[r][2] = vmlal_lane_s16(acc[r][2], vget_low_s16(o1), av, 1);
      acc[r][3] = vmlal_lane_s16(acc[r][3], vget_high_s16(o1), av, 1);
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int g = 0; g < 4; ++g) vst1q_s32(c + r * kInt8NR + 4 * g, acc[r][g]);
}

inline void tile_i16(const void* av, size_t lda, int mr, const uint8_t* pv, size_t kpairs, int32_t* c) {
  const int16_t* a = static_cast<const int16_t*>(av);
  const int8_t* panel = reinterpret_cast<const int8_t*>(pv);
  switch (mr) {
    case 1: return tile_i16_mr<1>(a, lda, panel, kpairs, c);
    case 2: return tile_i16_mr<2>(a, lda, panel, kpairs, c);
    case 3: return tile_i16_mr<3>(a, lda, panel, kpairs, c);
    case 4: return tile_i16_mr<4>(a, lda, panel, kpairs, c);
    case 5: return tile_i16_mr<5>(a, lda, panel, kpairs, c);
    default: return tile_i16_mr<6>(a, lda, panel, kpairs, c);
  }
}

template <int MR>
inline void tile_u7_neon_mr(const int8_t* a, size_t lda, const uint8_t* panel, size_t kquads, int32_t* c) {
  int32x4_t acc[MR][8];
  for (int r = 0; r < MR; ++r)
    for (int h = 0; h < 8; ++h) acc[r][h] = vdupq_n_s32(0);
  const int8_t* p = reinterpret_cast<const int8_t*>(panel);
  for (size_t kq = 0; kq < kquads; ++kq) {
    int8x16_t b[4];
    for (int g = 0; g < 4; ++g) b[g] = vld1q_s8(p + 64 * kq + 16 * g);
    for (int r = 0; r < MR; ++r) {
      int8x8_t av = vreinterpret_s8_s32(vld1_dup_s32(reinterpret_cast<const int32_t*>(a + r * lda + 4 * kq)));
      for (int g = 0; g < 4; ++g) {
        acc[r][2 * g] = vpadalq_s16(acc[r][2 * g], vmull_s8(vget_low_s8(b[g]), av));
        acc[r][2 * g + 1] = vpadalq_s16(acc[r][2 * g + 1], vmull_s8(vget_high_s8(b[g]), av));
      }
    }
  }
  // acc[r][h] = (channel 2h: inputs 0+1, 2+3; channel 2h + 1: the same): add the pairs
  for (int r = 0; r < MR; ++r)
    for (int g = 0; g < 4; ++g) vst1q_s32(c + r * kInt8NR + 4 * g, vpaddq_s32(acc[r][2 * g], acc[r][2 * g + 1]));
}

inline void tile_u7_neon(const void* av, size_t lda, int mr, const uint8_t* panel, size_t kquads, int32_t* c) {
  const int8_t* a = static_cast<const int8_t*>(av);
  for (int r0 = 0; r0 < mr; r0 += 3) {
    const int8_t* ar = a + static_cast<size_t>(r0) * lda;
    int32_t* cr = c + r0 * kInt8NR;
    switch (mr - r0) {
      case 1: tile_u7_neon_mr<1>(ar, lda, panel, kquads, cr); break;
      case 2: tile_u7_neon_mr<2>(ar, lda, panel, kquads, cr); break;
      default: tile_u7_neon_mr<3>(ar, lda, panel, kquads, cr); break;
    }
  }
}

#if defined(__ARM_FEATURE_DOTPROD)
// sdot tile for the u7 layout (int8_dotprod.cpp explains it; int8_i8mm.cpp uses it for
// single rows).
template <int MR>
inline void tile_u7_dot_mr(const int8_t* a, size_t lda, const uint8_t* panel, size_t kquads, int32_t* c) {
  int32x4_t acc[MR][4];
  for (int r = 0; r < MR; ++r)
    for (int g = 0; g < 4; ++g) acc[r][g] = vdupq_n_s32(0);
  const int8_t* p = reinterpret_cast<const int8_t*>(panel);
  for (size_t kq = 0; kq < kquads; ++kq) {
    int8x16_t b0 = vld1q_s8(p + 64 * kq), b1 = vld1q_s8(p + 64 * kq + 16);
    int8x16_t b2 = vld1q_s8(p + 64 * kq + 32), b3 = vld1q_s8(p + 64 * kq + 48);
    for (int r = 0; r < MR; ++r) {
      int8x16_t av = vreinterpretq_s8_s32(vld1q_dup_s32(reinterpret_cast<const int32_t*>(a + r * lda + 4 * kq)));
      acc[r][0] = vdotq_s32(acc[r][0], b0, av);
      acc[r][1] = vdotq_s32(acc[r][1], b1, av);
      acc[r][2] = vdotq_s32(acc[r][2], b2, av);
      acc[r][3] = vdotq_s32(acc[r][3], b3, av);
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int g = 0; g < 4; ++g) vst1q_s32(c + r * kInt8NR + 4 * g, acc[r][g]);
}

inline void tile_u7_dot(const void* av, size_t lda, int mr, const uint8_t* panel, size_t kquads, int32_t* c) {
  const int8_t* a = static_cast<const int8_t*>(av);
  switch (mr) {
    case 1: return tile_u7_dot_mr<1>(a, lda, panel, kquads, c);
    case 2: return tile_u7_dot_mr<2>(a, lda, panel, kquads, c);
    case 3: return tile_u7_dot_mr<3>(a, lda, panel, kquads, c);
    case 4: return tile_u7_dot_mr<4>(a, lda, panel, kquads, c);
    case 5: return tile_u7_dot_mr<5>(a, lda, panel, kquads, c);
    default: return tile_u7_dot_mr<6>(a, lda, panel, kquads, c);
  }
}

#endif

// The layouts these tiles read (int8.h): the int16 pair layout for any weight, and the
// u7 layout (u = B + 64, four inputs per channel) for codes in [-64, 63].
constexpr Int8Layout kLayoutI16 = {"i16x2.n16", 16, 6, 2, 0, -128, 127, Int8Operand::kI16};
constexpr Int8Layout kLayoutU7 = {"u7x4.n16", 16, 6, 4, 64, -64, 63, Int8Operand::kS8};

}  // namespace
}  // namespace lowbit
