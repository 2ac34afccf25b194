// Bindings for the extreme family (csrc/extreme/extreme.h documents the layouts).
#include "extreme/extreme.h"

#include "bindings/registry.h"

using namespace lowbit;

LOWBIT_BINDINGS(extreme) {
  m.def(
      "extreme_quantize",
      [](const py::array& x_, const std::string& kind, size_t a, size_t b, size_t c, int method, float threshold) {
        carray<float> x = require<float>(x_, "x");
        AffineLayout L;
        if (kind == "groups") L.kind = AffineLayout::groups;
        else if (kind == "cols") L.kind = AffineLayout::cols;
        else if (kind == "channels") L.kind = AffineLayout::channels;
        else throw std::invalid_argument("unknown layout '" + kind + "'");
        L.a = a, L.b = b, L.c = c;
        if (L.kind == AffineLayout::groups && c == 0 && a * b != 0)
          throw std::invalid_argument("group size must be >= 1");
        if (static_cast<size_t>(x.size()) != L.numel()) throw std::invalid_argument("x: size does not match layout");
        if (method < 0 || method > 4) throw std::invalid_argument("unknown method");
        size_t G = L.n_groups();
        carray<int8_t> codes(static_cast<py::ssize_t>(L.numel()));
        carray<float> scale(static_cast<py::ssize_t>(G));
        int8_t* qp = codes.mutable_data();
        float* sp = scale.mutable_data();
        {
          py::gil_scoped_release nogil;
          extreme_quantize(x.data(), L, static_cast<ExtremeMethod>(method), threshold, qp, sp);
        }
        return py::make_tuple(codes, scale);
      },
      py::arg("x"), py::arg("kind"), py::arg("a"), py::arg("b"), py::arg("c"), py::arg("method"),
      py::arg("threshold"));
}
