// Packing driver: code maps, row segments and threading (baseline code).
#include "pack/pack.h"

#include <algorithm>
#include <atomic>

#include "core/common.h"
#include "core/parallel.h"

namespace lowbit {

LOWBIT_KERNEL_FAMILY_INSTANCE(pack);

namespace {

constexpr size_t kSegment = 40 * 2048;  // codes per work item: a multiple of 40 (byte-aligned for all layouts)
constexpr size_t kGrainCodes = 1 << 16;   // codes per task below which threads don't pay

PackMap make_map(int width, bool is_signed, bool ternary) {
  PackMap m;
  m.width = width;
  const int fields = 1 << width;
  for (int q = 0; q < 256; ++q) m.enc_bad[q] = 0xFF;
  for (int f = 0; f < 256; ++f) m.dec_bad[f] = f < fields ? 0 : 0xFF;
  auto code = [&](int value, int field) {  // value as int, stored as a byte
    uint8_t b = static_cast<uint8_t>(value);
    m.enc[b] = static_cast<uint8_t>(field);
    m.enc_bad[b] = 0;
    m.dec[field] = b;
  };
  if (ternary) {  // field q + 1; field 3 is not a code
    for (int q = -1; q <= 1; ++q) code(q, q + 1);
    m.dec_bad[3] = 0xFF;
    m.off = 1, m.lim = 2, m.xr = 0;
  } else if (width == 1 && is_signed) {  // binary codes: -1 -> 0, +1 -> 1
    code(-1, 0);
    code(1, 1);
    m.other = 0xFF;
  } else if (is_signed) {  // two's complement within width
    int half = fields / 2;
    for (int q = -half; q < half; ++q) code(q, q & (fields - 1));
    m.off = static_cast<uint8_t>(half), m.lim = static_cast<uint8_t>(fields - 1), m.xr = static_cast<uint8_t>(half);
  } else {
    for (int q = 0; q < fields; ++q) code(q, q);
    m.off = 0, m.lim = static_cast<uint8_t>(fields - 1), m.xr = 0;
    m.other = 0;
  }
  return m;
}

// Calls fn(row, first code, count) over every segment of every row, in parallel;
// true if every call returned true.
template <class Fn>
bool for_segments(size_t rows, size_t n, Fn&& fn) {
  if (rows == 0 || n == 0) return true;
  size_t per_row = ceil_div(n, kSegment), items = rows * per_row;
  size_t item_len = std::min(n, kSegment);
  std::atomic<bool> ok{true};
  parallel_for(items, std::max<size_t>(1, kGrainCodes / item_len), [&](size_t b, size_t e) {
    bool good = true;
    for (size_t it = b; it < e; ++it) {
      size_t r = it / per_row, s = (it % per_row) * kSegment;
      good &= fn(r, s, std::min(kSegment, n - s));
    }
    if (!good) ok = false;
  });
  return ok;
}

using PackFn = bool (*)(const uint8_t*, size_t, const PackMap&, uint8_t*);

void pick_fns(const PackKernels& k, int width, PackFn* pack, PackFn* unpack) {
  switch (width) {
    case 1: *pack = k.pack1, *unpack = k.unpack1; break;
    case 2: *pack = k.pack2, *unpack = k.unpack2; break;
    case 4: *pack = k.pack4, *unpack = k.unpack4; break;
    default: *pack = k.pack_any, *unpack = k.unpack_any; break;
  }
}

bool pack_with(const uint8_t* codes, size_t rows, size_t n, const PackMap& m, uint8_t* packed) {
  PackFn pack, unpack;
  pick_fns(pack_kernels(), m.width, &pack, &unpack);
  size_t rb = ceil_div(n * m.width, 8);
  return for_segments(rows, n, [&](size_t r, size_t s, size_t len) {
    return pack(codes + r * n + s, len, m, packed + r * rb + s * m.width / 8);
  });
}

bool unpack_with(const uint8_t* packed, size_t rows, size_t n, const PackMap& m, uint8_t* codes) {
  PackFn pack, unpack;
  pick_fns(pack_kernels(), m.width, &pack, &unpack);
  size_t rb = ceil_div(n * m.width, 8);
  return for_segments(rows, n, [&](size_t r, size_t s, size_t len) {
    return unpack(packed + r * rb + s * m.width / 8, len, m, codes + r * n + s);
  });
}

}  // namespace

bool pack_bits(const uint8_t* codes, size_t rows, size_t n, int width, bool is_signed, uint8_t* packed) {
  if (width < 1 || width > 8) throw std::invalid_argument("width must be in 1..8");
  return pack_with(codes, rows, n, make_map(width, is_signed, false), packed);
}

bool unpack_bits(const uint8_t* packed, size_t rows, size_t n, int width, bool is_signed, uint8_t* codes) {
  if (width < 1 || width > 8) throw std::invalid_argument("width must be in 1..8");
  return unpack_with(packed, rows, n, make_map(width, is_signed, false), codes);
}

bool pack_ternary(const int8_t* codes, size_t rows, size_t n, TernaryLayout layout, uint8_t* packed) {
  const uint8_t* q = reinterpret_cast<const uint8_t*>(codes);
  if (layout == TernaryLayout::two_bit) return pack_with(q, rows, n, make_map(2, true, true), packed);
  const PackKernels& k = pack_kernels();
  size_t rb = ceil_div(n, 5);
  return for_segments(rows, n, [&](size_t r, size_t s, size_t len) {
    return k.pack_base3(codes + r * n + s, len, packed + r * rb + s / 5);
  });
}

bool unpack_ternary(const uint8_t* packed, size_t rows, size_t n, TernaryLayout layout, int8_t* codes) {
  if (layout == TernaryLayout::two_bit)
    return unpack_with(packed, rows, n, make_map(2, true, true), reinterpret_cast<uint8_t*>(codes));
  const PackKernels& k = pack_kernels();
  size_t rb = ceil_div(n, 5);
  return for_segments(rows, n, [&](size_t r, size_t s, size_t len) {
    return k.unpack_base3(packed + r * rb + s / 5, len, codes + r * n + s);
  });
}

}  // namespace lowbit
