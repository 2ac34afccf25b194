"""lowbit.reference: the NumPy oracle. It implements SPEC.md literally, with the
same signatures as the public API, and never calls native code."""
from .affine import dequantize, quantize, group_params  # noqa: F401
from .calibration import calibrate, quantize_bias  # noqa: F401
from .codebook import kmeans_codebook, quantize_codebook  # noqa: F401
from .act import quantize_activations, dequantize_activations  # noqa: F401
from .int8 import Linear, int8_matmul, linear, linear_accumulators  # noqa: F401
from .extreme import binarize, ternarize  # noqa: F401
from .packing import pack, pack_ternary, unpack, unpack_ternary  # noqa: F401
from . import gguf  # noqa: F401
from .ternary import (binary_matmul, binary_matmul_s32, ternary_matmul, ternary_matmul_s32,  # noqa: F401
                      tl_pack, tl_unpack)
