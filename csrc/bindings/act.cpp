// Bindings for per-token activation quantization (csrc/act/act.h documents the shapes).
#include "act/act.h"

#include "bindings/registry.h"

using namespace lowbit;

LOWBIT_BINDINGS(act) {
  m.def(
      "act_quantize_rows",
      [](const py::array& x_, size_t M, size_t K, int bits) {
        carray<float> x = require<float>(x_, "x");
        if (static_cast<size_t>(x.size()) != M * K) throw std::invalid_argument("x: size is not M * K");
        carray<int8_t> q(static_cast<py::ssize_t>(M * K));
        carray<float> s(static_cast<py::ssize_t>(M));
        int8_t* qp = q.mutable_data();
        float* sp = s.mutable_data();
        {
          py::gil_scoped_release nogil;
          quantize_rows(x.data(), M, K, bits, qp, sp);
        }
        return py::make_tuple(q, s);
      },
      py::arg("x"), py::arg("M"), py::arg("K"), py::arg("bits"));
}
