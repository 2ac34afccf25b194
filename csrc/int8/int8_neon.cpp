// int8 GEMM micro-kernels, aarch64 Advanced SIMD (every ARMv8-A core): the tiles of
// int8_neon_tiles.h.
#include "int8/int8_neon_tiles.h"

namespace lowbit {

const Int8Kernels int8_neon = {{kLayoutI16, tile_i16}, {kLayoutU7, tile_u7_neon},
                               int8_epilogue<kInt8NR>, int8_rowsum};

}  // namespace lowbit
