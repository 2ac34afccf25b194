// Bindings for the codebook family (csrc/codebook/codebook.h documents the layouts).
#include "codebook/codebook.h"

#include "bindings/registry.h"

using namespace lowbit;

namespace {

CodebookLayout cb_layout(size_t rows, size_t len, size_t group, size_t k, bool per_group) {
  if (group == 0 && rows != 0 && len != 0) throw std::invalid_argument("group size must be >= 1");
  if (k < 1 || k > 256) throw std::invalid_argument("codebook size must be in 1..256");
  CodebookLayout L;
  L.rows = rows, L.len = len, L.group = group, L.k = k, L.cb_per_group = per_group;
  return L;
}

}  // namespace

LOWBIT_BINDINGS(codebook) {
  m.def(
      "codebook_quantize",
      [](const py::array& x_, size_t rows, size_t len, size_t group, const py::array& cb_, bool cb_per_group,
         bool absmax_scaled, float cb_maxabs, py::object scale_) {
        carray<float> x = require<float>(x_, "x");
        carray<float> cb = require<float>(cb_, "codebook");
        size_t g1 = std::max<size_t>(group, 1);
        size_t G0 = cb_per_group ? std::max<size_t>(rows * ((len + g1 - 1) / g1), 1) : 1;
        size_t k = static_cast<size_t>(cb.size()) / G0;
        CodebookLayout L = cb_layout(rows, len, group, k, cb_per_group);
        if (static_cast<size_t>(x.size()) != rows * len) throw std::invalid_argument("x: size does not match layout");
        size_t G = L.n_groups();
        if (cb_per_group && static_cast<size_t>(cb.size()) != G * k)
          throw std::invalid_argument("codebook: need k codes per group");
        carray<float> scale;
        if (absmax_scaled) {
          scale = carray<float>(static_cast<py::ssize_t>(G));
        } else {
          scale = require<float>(scale_, "scale");
          if (static_cast<size_t>(scale.size()) != G) throw std::invalid_argument("scale: need one value per group");
          scale = carray<float>(scale);  // a copy we may hand back
        }
        carray<uint8_t> codes(static_cast<py::ssize_t>(rows * len));
        uint8_t* cp = codes.mutable_data();
        float* sp = scale.mutable_data();
        {
          py::gil_scoped_release nogil;
          codebook_quantize(x.data(), L, cb.data(), absmax_scaled, cb_maxabs, sp, cp);
        }
        return py::make_tuple(codes, scale);
      },
      py::arg("x"), py::arg("rows"), py::arg("len"), py::arg("group"), py::arg("codebook"), py::arg("cb_per_group"),
      py::arg("absmax_scaled"), py::arg("cb_maxabs"), py::arg("scale") = py::none());

  m.def(
      "codebook_dequantize",
      [](const py::array& q_, size_t rows, size_t len, size_t group, const py::array& cb_, bool cb_per_group,
         const py::array& scale_) {
        carray<uint8_t> q = require<uint8_t>(q_, "codes");
        carray<float> cb = require<float>(cb_, "codebook");
        carray<float> scale = require<float>(scale_, "scale");
        size_t G0 = cb_per_group ? std::max<size_t>(static_cast<size_t>(scale.size()), 1) : 1;
        size_t k = static_cast<size_t>(cb.size()) / G0;
        CodebookLayout L = cb_layout(rows, len, group, k, cb_per_group);
        if (static_cast<size_t>(q.size()) != rows * len)
          throw std::invalid_argument("codes: size does not match layout");
        if (static_cast<size_t>(scale.size()) != L.n_groups())
          throw std::invalid_argument("scale: need one value per group");
        const uint8_t* qd = q.data();
        for (py::ssize_t i = 0; i < q.size(); ++i)
          if (qd[i] >= k) throw std::invalid_argument("codes: an index past the codebook");
        carray<float> out(static_cast<py::ssize_t>(rows * len));
        float* op = out.mutable_data();
        {
          py::gil_scoped_release nogil;
          codebook_dequantize(q.data(), L, scale.data(), cb.data(), op);
        }
        return out;
      },
      py::arg("codes"), py::arg("rows"), py::arg("len"), py::arg("group"), py::arg("codebook"),
      py::arg("cb_per_group"), py::arg("scale"));

  m.def(
      "kmeans_1d",
      [](const py::array& x_, size_t rows, size_t len, size_t k) {
        carray<float> x = require<float>(x_, "x");
        if (static_cast<size_t>(x.size()) != rows * len) throw std::invalid_argument("x: size does not match rows*len");
        if (k < 2 || k > 256) throw std::invalid_argument("k must be in 2..256");
        carray<float> out(static_cast<py::ssize_t>(rows * k));
        float* op = out.mutable_data();
        {
          py::gil_scoped_release nogil;
          kmeans_1d(x.data(), rows, len, k, op);
        }
        return out;
      },
      py::arg("x"), py::arg("rows"), py::arg("len"), py::arg("k"));
}
