// Bindings for the calibration family (csrc/calib/calib.h documents the layouts).
#include "calib/calib.h"

#include "bindings/layout.h"
#include "bindings/registry.h"

namespace lowbit {
namespace {

CalibParams calib_params(const std::string& method, const std::string& scheme, int qmin, int qmax,
                         int absmax_qmax, int bits, double percentile, int n_candidates) {
  CalibParams p;
  if (method == "percentile") p.method = CalibMethod::percentile;
  else if (method == "mse") p.method = CalibMethod::mse;
  else if (method == "kl") p.method = CalibMethod::kl;
  else throw std::invalid_argument("unknown calibration method '" + method + "'");
  if (scheme == "absmax") p.affine.scheme = AffineScheme::absmax;
  else if (scheme == "minmax") p.affine.scheme = AffineScheme::minmax;
  else throw std::invalid_argument("unknown scheme '" + scheme + "'");
  if (qmin < -128 || qmax > 255 || qmin >= qmax) throw std::invalid_argument("bad code range");
  if (bits < 2 || bits > 8) throw std::invalid_argument("bits must be in 2..8");
  if (!(percentile > 0.0 && percentile <= 100.0)) throw std::invalid_argument("percentile must be in (0, 100]");
  if (n_candidates < 1) throw std::invalid_argument("n_candidates must be >= 1");
  p.affine.qmin = qmin, p.affine.qmax = qmax, p.affine.absmax_qmax = absmax_qmax;
  p.bits = bits, p.percentile = percentile, p.n_candidates = n_candidates;
  return p;
}

}  // namespace
}  // namespace lowbit

using namespace lowbit;

LOWBIT_BINDINGS(calib) {
  m.def(
      "calib_clip",
      [](const py::array& x_, const std::string& kind, size_t a, size_t b, size_t c, const std::string& method,
         const std::string& scheme, int qmin, int qmax, int absmax_qmax, int bits, double percentile,
         int n_candidates) {
        carray<float> x = require<float>(x_, "x");
        AffineLayout L = parse_layout(kind, a, b, c);
        if (static_cast<size_t>(x.size()) != L.numel()) throw std::invalid_argument("x: size does not match layout");
        CalibParams p = calib_params(method, scheme, qmin, qmax, absmax_qmax, bits, percentile, n_candidates);
        size_t G = L.n_groups();
        carray<float> lo(static_cast<py::ssize_t>(G)), hi(static_cast<py::ssize_t>(G));
        float *lp = lo.mutable_data(), *hp = hi.mutable_data();
        {
          py::gil_scoped_release nogil;
          calib_clip(x.data(), L, p, lp, hp);
        }
        return py::make_tuple(lo, hi);
      },
      py::arg("x"), py::arg("kind"), py::arg("a"), py::arg("b"), py::arg("c"), py::arg("method"),
      py::arg("scheme"), py::arg("qmin"), py::arg("qmax"), py::arg("absmax_qmax"), py::arg("bits"),
      py::arg("percentile") = 99.9, py::arg("n_candidates") = 100);

  m.def(
      "calib_kl_histogram",
      [](const py::array& x_) {
        carray<float> x = require<float>(x_, "x");
        carray<uint64_t> h(kKlBins);
        uint64_t* hp = h.mutable_data();
        {
          py::gil_scoped_release nogil;
          calib_kl_histogram(x.data(), static_cast<size_t>(x.size()), hp);
        }
        return h;
      },
      py::arg("x"));

  m.def(
      "calib_kl_divergences",
      [](const py::array& h_, int bits) {
        carray<uint64_t> h = require<uint64_t>(h_, "hist");
        if (h.size() != kKlBins) throw std::invalid_argument("hist: need 2048 counts");
        if (bits < 2 || bits > 8) throw std::invalid_argument("bits must be in 2..8");
        carray<double> out(kKlBins - (1 << (bits - 1)) + 1);
        calib_kl_divergences(h.data(), bits, out.mutable_data());
        return out;
      },
      py::arg("hist"), py::arg("bits"));

  m.def(
      "calib_mse_objectives",
      [](const py::array& x_, const std::string& scheme, int qmin, int qmax, int absmax_qmax, int n_candidates) {
        carray<float> x = require<float>(x_, "x");
        CalibParams p = calib_params("mse", scheme, qmin, qmax, absmax_qmax, 8, 99.9, n_candidates);
        carray<double> out(n_candidates);
        double* op = out.mutable_data();
        {
          py::gil_scoped_release nogil;
          calib_mse_objectives(x.data(), static_cast<size_t>(x.size()), p, op);
        }
        return out;
      },
      py::arg("x"), py::arg("scheme"), py::arg("qmin"), py::arg("qmax"), py::arg("absmax_qmax"),
      py::arg("n_candidates"));
}
