// int8 GEMM micro-kernels, aarch64 with the dot-product extension (ARMv8.2 asimddp:
// Neoverse N1 and later, Cortex-A55/A76 and later, Apple M1 and later).
//
// The u7 layout is sdot's own: per group of four inputs a channel's four weights are
// four consecutive bytes, and u in [0, 127] is a valid signed byte. One sdot adds the
// products of 4 channels x 4 inputs into 4 int32 lanes. A tile row keeps its 16
// channels in 4 accumulators; per group of four inputs the 64 panel bytes are 4
// vectors, the row's four inputs one ld1r, then 4 sdot. Six rows: 24 accumulators +
// 4 weight vectors + the broadcast fit the 32 vector registers; 24 sdot per 10 loads.
// The int16 layout (zero points) keeps the Advanced SIMD tile: |A - za| reaches 255.
#include "int8/int8_neon_tiles.h"

namespace lowbit {

const Int8Kernels int8_dotprod = {{kLayoutI16, tile_i16}, {kLayoutU7, tile_u7_dot},
                                 int8_epilogue<kInt8NR>, int8_rowsum};

}  // namespace lowbit
