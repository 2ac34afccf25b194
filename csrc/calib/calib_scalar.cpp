// Calibration kernels, portable scalar variant.
#include "calib/calib.h"
#include "calib/calib_ops.h"

namespace lowbit {
namespace {

void abs_histogram(const float* x, size_t n, double s, uint64_t* hist) {
  for (size_t i = 0; i < n; ++i) ++hist[kl_bin(x[i], s)];
}

void mse_objective(const float* x, size_t n, const float* inv, const float* scale, const float* qlo,
                   const float* qhi, size_t ncand, double* acc) {
  for (size_t k = 0; k < ncand; ++k) {
    double a = 0.0;
    for (size_t i = 0; i < n; ++i) {
      double e = mse_error(x[i], inv[k], scale[k], qlo[k], qhi[k]);
      a += e * e;
    }
    acc[k] += a;
  }
}

}  // namespace

const CalibKernels calib_scalar = {abs_histogram, mse_objective};

}  // namespace lowbit
