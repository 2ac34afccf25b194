// GGUF block formats (SPEC 8): ggml's Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, TQ1_0, TQ2_0,
// byte-identical to ggml's reference C code (quantize_row_*_ref) and to gguf-py.
//
// A tensor is rows of values; a row is a whole number of blocks, and each block
// of `block` floats becomes one struct of `bytes` bytes below, stored back to
// back. The kernels see only a flat run of blocks: x[nblocks * block] float32 in,
// out[nblocks * bytes] uint8 out (and the reverse for dequantize). The half
// precision scales are IEEE binary16, little-endian, converted from float32 with
// round-to-nearest-even and overflow to +-Inf, like GGML_FP32_TO_FP16.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/dispatch.h"

namespace lowbit {

enum GgufType : int { kQ8_0 = 0, kQ4_0, kQ4_1, kQ5_0, kQ5_1, kTQ1_0, kTQ2_0, kGgufTypeCount };

constexpr int kQK = 32;    // values per block of the Q formats (ggml QK8_0, QK4_0, ...)
constexpr int kQK_K = 256;  // values per block of the TQ formats (ggml QK_K)

// The block structs of ggml-common.h. ggml_half is a uint16_t there; here it is
// two bytes so that every struct has alignment 1 and can sit anywhere in a blob.
struct BlockQ8_0 { uint8_t d[2]; int8_t qs[kQK]; };                        // d * q
struct BlockQ4_0 { uint8_t d[2]; uint8_t qs[kQK / 2]; };                   // d * (q - 8)
struct BlockQ4_1 { uint8_t d[2]; uint8_t m[2]; uint8_t qs[kQK / 2]; };     // d * q + m
struct BlockQ5_0 { uint8_t d[2]; uint8_t qh[4]; uint8_t qs[kQK / 2]; };    // d * (q - 16)
struct BlockQ5_1 { uint8_t d[2]; uint8_t m[2]; uint8_t qh[4]; uint8_t qs[kQK / 2]; };  // d * q + m
struct BlockTQ1_0 { uint8_t qs[(kQK_K - 4 * kQK_K / 64) / 5]; uint8_t qh[kQK_K / 64]; uint8_t d[2]; };
struct BlockTQ2_0 { uint8_t qs[kQK_K / 4]; uint8_t d[2]; };
static_assert(sizeof(BlockQ8_0) == 34, "wrong q8_0 block size");
static_assert(sizeof(BlockQ4_0) == 18, "wrong q4_0 block size");
static_assert(sizeof(BlockQ4_1) == 20, "wrong q4_1 block size");
static_assert(sizeof(BlockQ5_0) == 22, "wrong q5_0 block size");
static_assert(sizeof(BlockQ5_1) == 24, "wrong q5_1 block size");
static_assert(sizeof(BlockTQ1_0) == 54, "wrong tq1_0 block size");
static_assert(sizeof(BlockTQ2_0) == 66, "wrong tq2_0 block size");

struct GgufTraits {
  const char* name;
  size_t block;  // values per block
  size_t bytes;  // bytes per block
};
constexpr GgufTraits kGgufTraits[kGgufTypeCount] = {
    {"Q8_0", kQK, sizeof(BlockQ8_0)},      {"Q4_0", kQK, sizeof(BlockQ4_0)},
    {"Q4_1", kQK, sizeof(BlockQ4_1)},      {"Q5_0", kQK, sizeof(BlockQ5_0)},
    {"Q5_1", kQK, sizeof(BlockQ5_1)},      {"TQ1_0", kQK_K, sizeof(BlockTQ1_0)},
    {"TQ2_0", kQK_K, sizeof(BlockTQ2_0)},
};

// One function per format and direction, indexed by GgufType.
//   quantize:   x[nblocks * block] -> out[nblocks * bytes]; false if x holds NaN or
//               Inf (out is then partly written and meaningless).
//   dequantize: in[nblocks * bytes] -> out[nblocks * block].
using GgufQuantizeFn = bool (*)(const float* x, size_t nblocks, uint8_t* out);
using GgufDequantizeFn = void (*)(const uint8_t* in, size_t nblocks, float* out);
struct GgufKernels {
  GgufQuantizeFn quantize[kGgufTypeCount];
  GgufDequantizeFn dequantize[kGgufTypeCount];
};

// Variants: one file each (gguf_<isa>.cpp), one word each here (core/dispatch.h).
LOWBIT_KERNEL_FAMILY(gguf, GgufKernels, scalar, avx2);

// ---- driver (gguf.cpp) ------------------------------------------------------
// Threaded over blocks. x / out / in are C-contiguous, nblocks * block values
// and nblocks * bytes bytes. gguf_quantize throws NonFiniteError on NaN/Inf.
void gguf_quantize(GgufType type, const float* x, size_t nblocks, uint8_t* out);
void gguf_dequantize(GgufType type, const uint8_t* in, size_t nblocks, float* out);

}  // namespace lowbit
