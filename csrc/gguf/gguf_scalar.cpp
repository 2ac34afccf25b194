// GGUF block formats, portable scalar variant: the block functions of gguf_ops.h in a loop.
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

}  // namespace

const GgufKernels gguf_scalar = {
    {
        quantize_blocks<kQK, sizeof(BlockQ8_0), quantize_block_q8_0>,
        quantize_blocks<kQK, sizeof(BlockQ4_0), quantize_block_q4_0>,
        quantize_blocks<kQK, sizeof(BlockQ4_1), quantize_block_q4_1>,
        quantize_blocks<kQK, sizeof(BlockQ5_0), quantize_block_q5_0>,
        quantize_blocks<kQK, sizeof(BlockQ5_1), quantize_block_q5_1>,
        quantize_blocks<kQK_K, sizeof(BlockTQ1_0), quantize_block_tq1_0>,
        quantize_blocks<kQK_K, sizeof(BlockTQ2_0), quantize_block_tq2_0>,
    },
    {
        dequantize_blocks<kQK, sizeof(BlockQ8_0), dequantize_block_q8_0>,
        dequantize_blocks<kQK, sizeof(BlockQ4_0), dequantize_block_q4_0>,
        dequantize_blocks<kQK, sizeof(BlockQ4_1), dequantize_block_q4_1>,
        dequantize_blocks<kQK, sizeof(BlockQ5_0), dequantize_block_q5_0>,
        dequantize_blocks<kQK, sizeof(BlockQ5_1), dequantize_block_q5_1>,
        dequantize_blocks<kQK_K, sizeof(BlockTQ1_0), dequantize_block_tq1_0>,
        dequantize_blocks<kQK_K, sizeof(BlockTQ2_0), dequantize_block_tq2_0>,
    },
};

}  // namespace lowbit
