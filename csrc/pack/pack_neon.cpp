// Packing kernels, aarch64 Advanced SIMD variant: widths 1, 2, 4 and base-3 in
// vectors (ld2/ld4 and st2/st4 do the (de)interleaving that the layouts need, tbl
// maps fields through the code tables); other widths and every tail go through the
// scalar helpers of pack_ops.h.
#include <arm_neon.h>

#include <algorithm>
#include <cstring>

#include "pack/pack.h"
#include "pack/pack_ops.h"

namespace lowbit {
namespace {

// ---- pack ---------------------------------------------------------------

// 16 flags (0xFF / 0) -> 16 bits, LSB first
inline uint16_t movemask16(uint8x16_t f) {
  static const uint8_t kBit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
  uint8x16_t b = vandq_u8(f, vld1q_u8(kBit));
  return static_cast<uint16_t>(vaddv_u8(vget_low_u8(b)) | (vaddv_u8(vget_high_u8(b)) << 8));
}

bool pack1(const uint8_t* q, size_t n, const PackMap& m, uint8_t* out) {
  const uint8x16_t one = vdupq_n_u8(1), other = vdupq_n_u8(m.other);
  uint8x16_t good = vdupq_n_u8(0xFF);
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    uint8x16_t v = vld1q_u8(q + i);
    uint8x16_t is1 = vceqq_u8(v, one);
    good = vandq_u8(good, vorrq_u8(is1, vceqq_u8(v, other)));
    uint16_t bits = movemask16(is1);
    std::memcpy(out + i / 8, &bits, 2);
  }
  bool ok = vminvq_u8(good) == 0xFF;
  return pack_any_scalar(q + i, n - i, m, out + i / 8) && ok;
}

// 64 codes -> 16 bytes: ld4 gives field k of every byte in val[k]; byte = f0 | f1 << 2 | ...
bool pack2(const uint8_t* q, size_t n, const PackMap& m, uint8_t* out) {
  const uint8x16_t off = vdupq_n_u8(m.off), xr = vdupq_n_u8(m.xr);
  uint8x16_t mx = vdupq_n_u8(0);
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    uint8x16x4_t c = vld4q_u8(q + i);
    uint8x16_t f[4];
    for (int k = 0; k < 4; ++k) {
      uint8x16_t v = vaddq_u8(c.val[k], off);
      mx = vmaxq_u8(mx, v);
      f[k] = veorq_u8(v, xr);
    }
    uint8x16_t b = vsliq_n_u8(vsliq_n_u8(vsliq_n_u8(f[0], f[1], 2), f[2], 4), f[3], 6);
    vst1q_u8(out + i / 4, b);
  }
  bool ok = vmaxvq_u8(mx) <= m.lim;
  return pack_any_scalar(q + i, n - i, m, out + i / 4) && ok;
}

bool pack4(const uint8_t* q, size_t n, const PackMap& m, uint8_t* out) {
  const uint8x16_t off = vdupq_n_u8(m.off), xr = vdupq_n_u8(m.xr);
  uint8x16_t mx = vdupq_n_u8(0);
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    uint8x16x2_t c = vld2q_u8(q + i);
    uint8x16_t a = vaddq_u8(c.val[0], off), b = vaddq_u8(c.val[1], off);
    mx = vmaxq_u8(mx, vmaxq_u8(a, b));
    vst1q_u8(out + i / 2, vsliq_n_u8(veorq_u8(a, xr), veorq_u8(b, xr), 4));
  }
  bool ok = vmaxvq_u8(mx) <= m.lim;
  return pack_any_scalar(q + i, n - i, m, out + i / 2) && ok;
}

// Base-3: 40 codes -> 8 bytes per step (reads 48 codes). tbl gathers digit k of the 8
// groups (codes 5j + k), digits d = q + 1 are combined as d0 + 3 d1 + 9 d2 + 27 d3 + 81 d4
// (< 243, no byte overflow for valid digits; invalid ones are caught by the max).
struct Base3Idx {
  uint8_t idx[5][8];
  Base3Idx() {
    for (int k = 0; k < 5; ++k)
      for (int j = 0; j < 8; ++j) idx[k][j] = static_cast<uint8_t>(5 * j + k);
  }
};

inline uint8x8_t pack_base3_step(const Base3Idx& T, const int8_t* q, uint8x16_t& mx) {
  uint8x16x3_t src;
  const uint8x16_t one = vdupq_n_u8(1);
  for (int r = 0; r < 3; ++r) {
    src.val[r] = vaddq_u8(vreinterpretq_u8_s8(vld1q_s8(q + 16 * r)), one);
  }
  uint8x8_t d[5];
  for (int k = 0; k < 5; ++k) d[k] = vqtbl3_u8(src, vld1_u8(T.idx[k]));
  uint8x8_t all = vmax_u8(vmax_u8(vmax_u8(d[0], d[1]), vmax_u8(d[2], d[3])), d[4]);
  mx = vmaxq_u8(mx, vcombine_u8(all, all));
  uint8x8_t b = vmla_u8(d[3], d[4], vdup_n_u8(3));  // ((d4 * 3 + d3) * 3 + d2) * 3 ...
  b = vmla_u8(d[2], b, vdup_n_u8(3));
  b = vmla_u8(d[1], b, vdup_n_u8(3));
  return vmla_u8(d[0], b, vdup_n_u8(3));
}

bool pack_base3(const int8_t* q, size_t n, uint8_t* out) {
  static const Base3Idx T;
  uint8x16_t mx = vdupq_n_u8(0);
  size_t i = 0;
  for (; i + 48 <= n; i += 40) vst1_u8(out + i / 5, pack_base3_step(T, q + i, mx));
  bool ok = vmaxvq_u8(mx) <= 2;
  return pack_base3_scalar(q + i, n - i, out + i / 5) && ok;
}

// ---- unpack -------------------------------------------------------------

bool unpack1(const uint8_t* p, size_t n, const PackMap& m, uint8_t* out) {
  static const uint8_t kBit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
  const uint8x16_t bit = vld1q_u8(kBit), lut = vld1q_u8(m.dec), one = vdupq_n_u8(1);
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    uint8x16_t x = vcombine_u8(vdup_n_u8(p[i / 8]), vdup_n_u8(p[i / 8 + 1]));
    uint8x16_t f = vandq_u8(vtstq_u8(x, bit), one);
    vst1q_u8(out + i, vqtbl1q_u8(lut, f));
  }
  return unpack_any_scalar(p + i / 8, n - i, m, out + i);
}

// 16 bytes -> 64 codes: field k of every byte (shift, mask), the code tables, st4.
bool unpack2(const uint8_t* p, size_t n, const PackMap& m, uint8_t* out) {
  const uint8x16_t lut = vld1q_u8(m.dec), badlut = vld1q_u8(m.dec_bad), three = vdupq_n_u8(3);
  uint8x16_t bad = vdupq_n_u8(0);
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    uint8x16_t b = vld1q_u8(p + i / 4);
    uint8x16_t f[4] = {vandq_u8(b, three), vandq_u8(vshrq_n_u8(b, 2), three), vandq_u8(vshrq_n_u8(b, 4), three),
                       vshrq_n_u8(b, 6)};
    uint8x16x4_t c;
    for (int k = 0; k < 4; ++k) {
      bad = vorrq_u8(bad, vqtbl1q_u8(badlut, f[k]));
      c.val[k] = vqtbl1q_u8(lut, f[k]);
    }
    vst4q_u8(out + i, c);
  }
  bool ok = vmaxvq_u8(bad) == 0;
  return unpack_any_scalar(p + i / 4, n - i, m, out + i) && ok;
}

bool unpack4(const uint8_t* p, size_t n, const PackMap& m, uint8_t* out) {
  const uint8x16_t lut = vld1q_u8(m.dec), badlut = vld1q_u8(m.dec_bad), mask = vdupq_n_u8(0x0F);
  uint8x16_t bad = vdupq_n_u8(0);
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    uint8x16_t b = vld1q_u8(p + i / 2);
    uint8x16_t lo = vandq_u8(b, mask), hi = vshrq_n_u8(b, 4);
    bad = vorrq_u8(bad, vorrq_u8(vqtbl1q_u8(badlut, lo), vqtbl1q_u8(badlut, hi)));
    uint8x16x2_t c = {{vqtbl1q_u8(lut, lo), vqtbl1q_u8(lut, hi)}};
    vst2q_u8(out + i, c);
  }
  bool ok = vmaxvq_u8(bad) == 0;
  return unpack_any_scalar(p + i / 2, n - i, m, out + i) && ok;
}

// Base-3: 8 bytes -> 40 codes. Trits by repeated division by 3, as b / 3 = (b * 171) >> 9
// (exact for every byte value); the 5 trit vectors are interleaved to code order by tbl.
struct Base3Out {
  uint8_t idx[3][16];
  Base3Out() {
    for (int o = 0; o < 40; ++o) idx[o / 16][o % 16] = static_cast<uint8_t>(8 * (o % 5) + o / 5);  // trit k, group j
    for (int o = 40; o < 48; ++o) idx[o / 16][o % 16] = 0xFF;
  }
};

bool unpack_base3(const uint8_t* p, size_t n, int8_t* out) {
  static const Base3Out T;
  const size_t nbytes = (n + 4) / 5;
  uint8x8_t mx = vdup_n_u8(0);
  const uint8x8_t three = vdup_n_u8(3), c171 = vdup_n_u8(171);
  size_t i = 0;
  for (; i + 40 <= n && i / 5 + 8 <= nbytes; i += 40) {
    uint8x8_t b = vld1_u8(p + i / 5);
    mx = vmax_u8(mx, b);
    uint8x8_t t[5];
    for (int k = 0; k < 5; ++k) {
      uint8x8_t q3 = vshrn_n_u16(vmull_u8(b, c171), 8);
      q3 = vshr_n_u8(q3, 1);            // (b * 171) >> 9
      t[k] = vmls_u8(b, q3, three);     // b - 3 * (b / 3)
      b = q3;
    }
    uint8x16x3_t tt = {{vcombine_u8(t[0], t[1]), vcombine_u8(t[2], t[3]), vcombine_u8(t[4], vdup_n_u8(0))}};
    const int8x16_t minus1 = vdupq_n_s8(-1);
    vst1q_s8(out + i, vaddq_s8(vreinterpretq_s8_u8(vqtbl3q_u8(tt, vld1q_u8(T.idx[0]))), minus1));
    vst1q_s8(out + i + 16, vaddq_s8(vreinterpretq_s8_u8(vqtbl3q_u8(tt, vld1q_u8(T.idx[1]))), minus1));
    vst1_s8(out + i + 32, vadd_s8(vreinterpret_s8_u8(vqtbl3_u8(tt, vld1_u8(T.idx[2]))), vget_low_s8(minus1)));
  }
  bool ok = vmaxv_u8(mx) < 243;
  return unpack_base3_scalar(p + i / 5, n - i, out + i) && ok;
}

bool pack_any(const uint8_t* q, size_t n, const PackMap& m, uint8_t* out) { return pack_any_scalar(q, n, m, out); }
bool unpack_any(const uint8_t* p, size_t n, const PackMap& m, uint8_t* out) {
  return unpack_any_scalar(p, n, m, out);
}

}  // namespace

const PackKernels pack_neon = {pack1,   pack2,   pack4,   pack_any,   unpack1,
                               unpack2, unpack4, unpack_any, pack_base3, unpack_base3};

}  // namespace lowbit
