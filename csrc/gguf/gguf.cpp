// GGUF driver: threads over blocks. Baseline code; the per-ISA work is in GgufKernels.
#include "gguf/gguf.h"

#include <algorithm>
#include <atomic>

#include "core/common.h"
#include "core/parallel.h"

namespace lowbit {

LOWBIT_KERNEL_FAMILY_INSTANCE(gguf);


namespace {
constexpr size_t kGrain = 1 << 15;  // values per task below which threads don't pay
}

void gguf_quantize(GgufType type, const float* x, size_t nblocks, uint8_t* out) {
  const GgufQuantizeFn fn = gguf_kernels().quantize[type];
  const size_t block = kGgufTraits[type].block, bytes = kGgufTraits[type].bytes;
  std::atomic<bool> ok{true};
  parallel_for(nblocks, std::max<size_t>(1, kGrain / block), [&](size_t b, size_t e) {
    if (!fn(x + b * block, e - b, out + b * bytes)) ok = false;
  });
  if (!ok) throw NonFiniteError();
}

void gguf_dequantize(GgufType type, const uint8_t* in, size_t nblocks, float* out) {
  const GgufDequantizeFn fn = gguf_kernels().dequantize[type];
  const size_t block = kGgufTraits[type].block, bytes = kGgufTraits[type].bytes;
  parallel_for(nblocks, std::max<size_t>(1, kGrain / block),
               [&](size_t b, size_t e) { fn(in + b * bytes, e - b, out + b * block); });
}

}  // namespace lowbit
