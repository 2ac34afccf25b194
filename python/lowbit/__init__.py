"""lowbit: exact, fast quantization of AI model weights on the CPU.

The public API is re-exported here; ``lowbit.reference`` holds the NumPy twin
of every function, and SPEC.md (docs/spec.md) is the numeric contract.
"""
from ._core import (available_isas, cpu_info, get_isa, get_kernel, get_num_threads, kernel_variants,  # noqa: F401
                    release_buffers, set_kernel, use_kernel,
                    set_isa, set_num_threads, thread_runtime, use_isa, use_openmp_threads, use_own_threads)
from .qtensor import QTensor  # noqa: F401
from .affine import dequantize, quantize  # noqa: F401
from .calibration import Observer, calibrate, quantize_bias  # noqa: F401
from .codebook import kmeans_codebook, quantize_codebook  # noqa: F401
from .act import quantize_activations  # noqa: F401
from .int8 import Linear, int8_matmul, linear  # noqa: F401
from .extreme import binarize, ternarize  # noqa: F401
from .packing import pack, pack_ternary, unpack, unpack_ternary  # noqa: F401
from . import gguf  # noqa: F401
from .checkpoint import load, quantize_checkpoint, save  # noqa: F401
from .ternary import (BinaryWeight, BitLinear, TernaryWeight, binary_matmul, binary_matmul_s32,  # noqa: F401
                      ternary_matmul, ternary_matmul_s32)
from . import reference  # noqa: F401
from .schemes import register_builtin_schemes

register_builtin_schemes()

__version__ = "0.1.0"
