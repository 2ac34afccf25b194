// Bit packing of small integer codes (SPEC 6): b-bit fields, 2-bit and base-3 ternary.
//
// Kernels work on one segment of one row: n codes <-> ceil(n * width / 8) bytes
// (base-3: ceil(n / 5) bytes). A segment starts at a multiple of 40 codes of its
// row (byte-aligned for every width and for base-3), so only a row's last
// segment has a partial, zero-padded last byte. Kernels write exactly the bytes
// (pack) or codes (unpack) of their segment, never beyond. Codes are bytes:
// int8 or uint8 bit patterns; a PackMap (built by the driver) says what they mean.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/dispatch.h"

namespace lowbit {

struct PackMap {
  int width = 0;               // field width in bits, 1..8
  // Code byte -> field; enc_bad[q] != 0 marks a code the width cannot hold.
  uint8_t enc[256] = {}, enc_bad[256] = {};
  // The same map as arithmetic, for every width but binary (width 1 signed):
  // v = uint8(q + off); valid iff v <= lim; field = v ^ xr. Unpacking inverts
  // it: v = field ^ xr, valid iff v <= lim, q = v - off.
  uint8_t off = 0, lim = 0, xr = 0;
  // Width 1: code 1 -> bit 1, code `other` (0, or 0xFF = -1 for binary codes) -> bit 0.
  uint8_t other = 0;
  // Field -> code byte; dec_bad[f] != 0 marks a field that is not a code.
  uint8_t dec[256] = {}, dec_bad[256] = {};
};

struct PackKernels {
  // Pack n codes into out; false if a code is invalid (out is then unspecified).
  bool (*pack1)(const uint8_t* q, size_t n, const PackMap& m, uint8_t* out);
  bool (*pack2)(const uint8_t* q, size_t n, const PackMap& m, uint8_t* out);
  bool (*pack4)(const uint8_t* q, size_t n, const PackMap& m, uint8_t* out);
  bool (*pack_any)(const uint8_t* q, size_t n, const PackMap& m, uint8_t* out);  // any width
  // Unpack n codes from p; false if a field is not a code.
  bool (*unpack1)(const uint8_t* p, size_t n, const PackMap& m, uint8_t* out);
  bool (*unpack2)(const uint8_t* p, size_t n, const PackMap& m, uint8_t* out);
  bool (*unpack4)(const uint8_t* p, size_t n, const PackMap& m, uint8_t* out);
  bool (*unpack_any)(const uint8_t* p, size_t n, const PackMap& m, uint8_t* out);
  // Base-3 ternary: 5 codes q in {-1, 0, 1} per byte, byte = sum (q_i + 1) 3^i.
  bool (*pack_base3)(const int8_t* q, size_t n, uint8_t* out);
  bool (*unpack_base3)(const uint8_t* p, size_t n, int8_t* out);  // false if a byte >= 243
};

// Variants: one file each (pack_<isa>.cpp), one word each here (core/dispatch.h).
LOWBIT_KERNEL_FAMILY(pack, PackKernels, scalar, avx2);

// ---- driver (pack.cpp) ---------------------------------------------------
//
// Every entry works on `rows` rows of `n` codes, C-contiguous: codes[rows * n]
// and packed[rows * row_bytes] with row_bytes = ceil(n * width / 8) (ternary
// "2bit": width 2; "base3": ceil(n / 5)). Returns false when a code (pack) or a
// field (unpack) is invalid.

// width 1..8. is_signed: codes are int8 two's complement within `width` bits;
// width 1 signed means the binary codes {-1, +1} (-1 -> 0, +1 -> 1).
bool pack_bits(const uint8_t* codes, size_t rows, size_t n, int width, bool is_signed, uint8_t* packed);
bool unpack_bits(const uint8_t* packed, size_t rows, size_t n, int width, bool is_signed, uint8_t* codes);

enum class TernaryLayout { two_bit = 0, base3 = 1 };
bool pack_ternary(const int8_t* codes, size_t rows, size_t n, TernaryLayout layout, uint8_t* packed);
bool unpack_ternary(const uint8_t* packed, size_t rows, size_t n, TernaryLayout layout, int8_t* codes);

}  // namespace lowbit
