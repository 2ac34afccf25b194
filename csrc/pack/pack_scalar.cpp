// Packing kernels, portable scalar variant: every width through the bit stream.
#include "pack/pack.h"
#include "pack/pack_ops.h"

namespace lowbit {

const PackKernels pack_scalar = {pack_any_scalar,   pack_any_scalar,   pack_any_scalar,    pack_any_scalar,
                                 unpack_any_scalar, unpack_any_scalar, unpack_any_scalar,  unpack_any_scalar,
                                 pack_base3_scalar, unpack_base3_scalar};

}  // namespace lowbit
