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

void gguf_quantize(GgufType type, const float* x, size_t nblocks, uint8_t* out, size_t n_per_row,
                   const float* qw, bool search) {
  const GgufQuantizeFn fn = search ? gguf_kernels().search[type] : gguf_kernels().quantize[type];
  const size_t block = kGgufTraits[type].block, bytes = kGgufTraits[type].bytes;
  const size_t bpr = qw && n_per_row ? n_per_row / block : nblocks;  // blocks per row
  std::atomic<bool> ok{true};
  // The legacy formats' imatrix encoders weigh by the whole row (sigma2): whole rows per call.
  const bool whole_rows = qw && n_per_row && (type == kQ4_0 || type == kQ4_1 || type == kQ5_0 || type == kQ5_1);
  if (whole_rows) {
    const size_t nrows = nblocks / bpr;
    parallel_for(nrows, std::max<size_t>(1, kGrain / n_per_row), [&](size_t b, size_t e) {
      for (size_t r = b; r < e; ++r)
        if (!fn(x + r * n_per_row, bpr, qw, out + r * bpr * bytes)) ok = false;
    });
    if (!ok) throw NonFiniteError();
    return;
  }
  const size_t grain = search ? std::max<size_t>(1, kGrain / 32 / block) : std::max<size_t>(1, kGrain / block);
  parallel_for(nblocks, grain, [&](size_t b, size_t e) {
    while (b < e) {  // one call per piece of a row, so qw lines up with the blocks
      const size_t in_row = b % bpr, end = std::min(e, b - in_row + bpr);
      if (!fn(x + b * block, end - b, qw ? qw + in_row * block : nullptr, out + b * bytes)) ok = false;
      b = end;
    }
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
