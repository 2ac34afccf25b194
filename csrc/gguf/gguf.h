// GGUF block formats (SPEC 8): ggml's Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, TQ1_0, TQ2_0,
// byte-identical to ggml's reference C code (quantize_row_*_ref) and to gguf-py;
// the super-block formats Q2_K..Q6_K, Q8_K, IQ4_NL, IQ4_XS, byte-identical to
// ggml_quantize_chunk (with or without an importance matrix); and decoders for
// the other types a llama.cpp model may hold (IQ1/IQ2/IQ3 families, MXFP4, F16,
// BF16), bit-identical to ggml's to_float.
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

enum GgufType : int {
  kQ8_0 = 0, kQ4_0, kQ4_1, kQ5_0, kQ5_1, kTQ1_0, kTQ2_0,
  kQ2_K, kQ3_K, kQ4_K, kQ5_K, kQ6_K, kQ8_K, kIQ4_NL, kIQ4_XS,
  // decode only (no encoder: quantize[] is nullptr)
  kIQ2_XXS, kIQ2_XS, kIQ2_S, kIQ3_XXS, kIQ3_S, kIQ1_S, kIQ1_M, kMXFP4, kF16, kBF16,
  kGgufTypeCount
};

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
// Super-blocks of 256 (ggml-common.h, QK_K = 256).
struct BlockQ2_K { uint8_t scales[16]; uint8_t qs[64]; uint8_t d[2]; uint8_t dmin[2]; };
struct BlockQ3_K { uint8_t hmask[32]; uint8_t qs[64]; uint8_t scales[12]; uint8_t d[2]; };
struct BlockQ4_K { uint8_t d[2]; uint8_t dmin[2]; uint8_t scales[12]; uint8_t qs[128]; };
struct BlockQ5_K { uint8_t d[2]; uint8_t dmin[2]; uint8_t scales[12]; uint8_t qh[32]; uint8_t qs[128]; };
struct BlockQ6_K { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; uint8_t d[2]; };
struct BlockQ8_K { uint8_t d[4]; int8_t qs[256]; uint8_t bsums[32]; };  // d: float32; bsums: int16
struct BlockIQ4_NL { uint8_t d[2]; uint8_t qs[16]; };
struct BlockIQ4_XS { uint8_t d[2]; uint8_t scales_h[2]; uint8_t scales_l[4]; uint8_t qs[128]; };
struct BlockIQ2_XXS { uint8_t d[2]; uint8_t qs[64]; };
struct BlockIQ2_XS { uint8_t d[2]; uint8_t qs[64]; uint8_t scales[8]; };
struct BlockIQ2_S { uint8_t d[2]; uint8_t qs[64]; uint8_t qh[8]; uint8_t scales[8]; };
struct BlockIQ3_XXS { uint8_t d[2]; uint8_t qs[96]; };
struct BlockIQ3_S { uint8_t d[2]; uint8_t qs[64]; uint8_t qh[8]; uint8_t signs[32]; uint8_t scales[4]; };
struct BlockIQ1_S { uint8_t d[2]; uint8_t qs[32]; uint8_t qh[16]; };
struct BlockIQ1_M { uint8_t qs[32]; uint8_t qh[16]; uint8_t scales[8]; };
struct BlockMXFP4 { uint8_t e; uint8_t qs[16]; };
static_assert(sizeof(BlockQ2_K) == 84 && sizeof(BlockQ3_K) == 110 && sizeof(BlockQ4_K) == 144 &&
                  sizeof(BlockQ5_K) == 176 && sizeof(BlockQ6_K) == 210 && sizeof(BlockQ8_K) == 292,
              "wrong K-quant block size");
static_assert(sizeof(BlockIQ4_NL) == 18 && sizeof(BlockIQ4_XS) == 136 && sizeof(BlockIQ2_XXS) == 66 &&
                  sizeof(BlockIQ2_XS) == 74 && sizeof(BlockIQ2_S) == 82 && sizeof(BlockIQ3_XXS) == 98 &&
                  sizeof(BlockIQ3_S) == 110 && sizeof(BlockIQ1_S) == 50 && sizeof(BlockIQ1_M) == 56 &&
                  sizeof(BlockMXFP4) == 17,
              "wrong i-quant block size");
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
    {"TQ2_0", kQK_K, sizeof(BlockTQ2_0)},  {"Q2_K", kQK_K, sizeof(BlockQ2_K)},
    {"Q3_K", kQK_K, sizeof(BlockQ3_K)},    {"Q4_K", kQK_K, sizeof(BlockQ4_K)},
    {"Q5_K", kQK_K, sizeof(BlockQ5_K)},    {"Q6_K", kQK_K, sizeof(BlockQ6_K)},
    {"Q8_K", kQK_K, sizeof(BlockQ8_K)},    {"IQ4_NL", kQK, sizeof(BlockIQ4_NL)},
    {"IQ4_XS", kQK_K, sizeof(BlockIQ4_XS)}, {"IQ2_XXS", kQK_K, sizeof(BlockIQ2_XXS)},
    {"IQ2_XS", kQK_K, sizeof(BlockIQ2_XS)}, {"IQ2_S", kQK_K, sizeof(BlockIQ2_S)},
    {"IQ3_XXS", kQK_K, sizeof(BlockIQ3_XXS)}, {"IQ3_S", kQK_K, sizeof(BlockIQ3_S)},
    {"IQ1_S", kQK_K, sizeof(BlockIQ1_S)},  {"IQ1_M", kQK_K, sizeof(BlockIQ1_M)},
    {"MXFP4", kQK, sizeof(BlockMXFP4)},    {"F16", 1, 2},
    {"BF16", 1, 2},
};

// One function per format and direction, indexed by GgufType.
//   quantize:   x[nblocks * block] -> out[nblocks * bytes]; false if x holds NaN or
//               Inf (out is then partly written and meaningless). qw is nullptr or
//               the importance weights of the blocks' columns (nblocks * block
//               floats, non-negative, finite): the blocks all lie in one row. The
//               legacy formats and Q8_K ignore it. nullptr for decode-only types.
//   dequantize: in[nblocks * bytes] -> out[nblocks * block].
using GgufQuantizeFn = bool (*)(const float* x, size_t nblocks, const float* qw, uint8_t* out);
using GgufDequantizeFn = void (*)(const uint8_t* in, size_t nblocks, float* out);
//   search:     quantize with search=True (gguf_search.h); nullptr where none.
struct GgufKernels {
  GgufQuantizeFn quantize[kGgufTypeCount];
  GgufDequantizeFn dequantize[kGgufTypeCount];
  GgufQuantizeFn search[kGgufTypeCount];
};

// Variants: one file each (gguf_<isa>.cpp), one word each here (core/dispatch.h).
LOWBIT_KERNEL_FAMILY(gguf, GgufKernels, scalar, avx2, avx512, neon);

// ---- driver (gguf.cpp) ------------------------------------------------------
// Threaded over blocks. x / out / in are C-contiguous, nblocks * block values
// and nblocks * bytes bytes. gguf_quantize throws NonFiniteError on NaN/Inf.
// Rows are n_per_row values (a multiple of block); qw is nullptr or n_per_row
// importance weights shared by every row.
void gguf_quantize(GgufType type, const float* x, size_t nblocks, uint8_t* out,
                   size_t n_per_row = 0, const float* qw = nullptr, bool search = false);
void gguf_dequantize(GgufType type, const uint8_t* in, size_t nblocks, float* out);

}  // namespace lowbit
