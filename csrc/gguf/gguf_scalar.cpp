// GGUF block formats, portable scalar variant: the block functions of gguf_ops.h in a loop.
#include "gguf/gguf.h"
#include "gguf/gguf_iq.h"
#include "gguf/gguf_kquants.h"
#include "gguf/gguf_search.h"
#include "gguf/gguf_ops.h"

namespace lowbit {
namespace {

template <size_t kBlock, size_t kBytes, bool (*kFn)(const float*, uint8_t*)>
bool quantize_blocks(const float* x, size_t nblocks, const float*, uint8_t* out) {
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
        kq::legacy_with_imatrix<quantize_blocks<kQK, sizeof(BlockQ4_0), quantize_block_q4_0>,
                                kq::quantize_row_legacy_imatrix<8, false>>,
        kq::legacy_with_imatrix<quantize_blocks<kQK, sizeof(BlockQ4_1), quantize_block_q4_1>,
                                kq::quantize_row_legacy_imatrix<15, true>>,
        kq::legacy_with_imatrix<quantize_blocks<kQK, sizeof(BlockQ5_0), quantize_block_q5_0>,
                                kq::quantize_row_legacy_imatrix<16, false>>,
        kq::legacy_with_imatrix<quantize_blocks<kQK, sizeof(BlockQ5_1), quantize_block_q5_1>,
                                kq::quantize_row_legacy_imatrix<31, true>>,
        quantize_blocks<kQK_K, sizeof(BlockTQ1_0), quantize_block_tq1_0>,
        quantize_blocks<kQK_K, sizeof(BlockTQ2_0), quantize_block_tq2_0>,
        kq::quantize_blocks_w<kQK_K, sizeof(BlockQ2_K), kq::quantize_block_q2_K>,
        kq::quantize_blocks_w<kQK_K, sizeof(BlockQ3_K), kq::quantize_block_q3_K>,
        kq::quantize_blocks_w<kQK_K, sizeof(BlockQ4_K), kq::quantize_block_q4_K>,
        kq::quantize_blocks_w<kQK_K, sizeof(BlockQ5_K), kq::quantize_block_q5_K>,
        kq::quantize_blocks_w<kQK_K, sizeof(BlockQ6_K), kq::quantize_block_q6_K>,
        kq::quantize_blocks_w<kQK_K, sizeof(BlockQ8_K), kq::quantize_block_q8_K>,
        kq::quantize_blocks_w<kQK, sizeof(BlockIQ4_NL), kq::quantize_block_iq4_nl>,
        kq::quantize_blocks_w<kQK_K, sizeof(BlockIQ4_XS), kq::quantize_block_iq4_xs>,
    },
    {
        dequantize_blocks<kQK, sizeof(BlockQ8_0), dequantize_block_q8_0>,
        dequantize_blocks<kQK, sizeof(BlockQ4_0), dequantize_block_q4_0>,
        dequantize_blocks<kQK, sizeof(BlockQ4_1), dequantize_block_q4_1>,
        dequantize_blocks<kQK, sizeof(BlockQ5_0), dequantize_block_q5_0>,
        dequantize_blocks<kQK, sizeof(BlockQ5_1), dequantize_block_q5_1>,
        dequantize_blocks<kQK_K, sizeof(BlockTQ1_0), dequantize_block_tq1_0>,
        dequantize_blocks<kQK_K, sizeof(BlockTQ2_0), dequantize_block_tq2_0>,
        kq::dequantize_blocks<kQK_K, sizeof(BlockQ2_K), kq::dequantize_block_q2_K>,
        kq::dequantize_blocks<kQK_K, sizeof(BlockQ3_K), kq::dequantize_block_q3_K>,
        kq::dequantize_blocks<kQK_K, sizeof(BlockQ4_K), kq::dequantize_block_q4_K>,
        kq::dequantize_blocks<kQK_K, sizeof(BlockQ5_K), kq::dequantize_block_q5_K>,
        kq::dequantize_blocks<kQK_K, sizeof(BlockQ6_K), kq::dequantize_block_q6_K>,
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
