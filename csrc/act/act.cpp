// Activation quantization driver: per-row scales (SPEC 5) and threading over rows.
#include "act/act.h"

#include <algorithm>
#include <atomic>
#include <stdexcept>

#include "act/act_ops.h"
#include "core/common.h"
#include "core/parallel.h"

namespace lowbit {

LOWBIT_KERNEL_FAMILY_INSTANCE(act);


void quantize_rows(const float* x, size_t M, size_t K, int bits, int8_t* q, float* s_out, size_t ldq) {
  if (bits < 2 || bits > 8) throw std::invalid_argument("bits must be in 2..8");
  if (M == 0) return;
  if (ldq == 0) ldq = K;
  const ActKernels& k = act_kernels();
  const int32_t qmax = (1 << (bits - 1)) - 1, qmin = -(1 << (bits - 1));
  std::atomic<bool> ok{true};
  size_t grain = std::max<size_t>(1, (size_t{1} << 14) / std::max<size_t>(K, 1));
  parallel_for(M, grain, [&](size_t b, size_t e) {
    for (size_t r = b; r < e; ++r) {
      const float* xr = x + r * K;
      float amax;
      if (!k.absmax(xr, K, &amax)) {
        ok = false;
        return;
      }
      float s = act_scale(amax, qmax);
      s_out[r] = s;
      k.quantize(xr, K, s, qmin, qmax, q + r * ldq);
    }
  });
  if (!ok) throw NonFiniteError();
}

}  // namespace lowbit
