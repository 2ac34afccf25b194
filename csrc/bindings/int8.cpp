// Bindings for the int8 GEMM / linear family (csrc/int8/int8.h documents layouts and formulas).
#include "int8/int8.h"

#include "bindings/registry.h"

using namespace lowbit;

LOWBIT_BINDINGS(int8) {
  m.def("int8_packed_bytes", &int8_packed_bytes, py::arg("N"), py::arg("K"));
  m.def("int8_u7_packed_bytes", &int8_u7_packed_bytes, py::arg("N"), py::arg("K"));

  m.def(
      "int8_pack_weights",
      [](const py::array& b_, size_t N, size_t K) {
        carray<int8_t> b = require<int8_t>(b_, "b");
        if (static_cast<size_t>(b.size()) != N * K) throw std::invalid_argument("b: size is not N * K");
        auto out = cached_array<int8_t>({static_cast<py::ssize_t>(int8_packed_bytes(N, K))});
        int8_t* op = out.mutable_data();
        {
          py::gil_scoped_release nogil;
          int8_pack_weights(b.data(), N, K, op);
        }
        return out;
      },
      py::arg("b"), py::arg("N"), py::arg("K"));

  m.def(
      "int8_pack_weights_u7",
      [](const py::array& b_, size_t N, size_t K) -> py::object {
        carray<int8_t> b = require<int8_t>(b_, "b");
        if (static_cast<size_t>(b.size()) != N * K) throw std::invalid_argument("b: size is not N * K");
        auto out = cached_array<uint8_t>({static_cast<py::ssize_t>(int8_u7_packed_bytes(N, K))});
        uint8_t* op = out.mutable_data();
        bool ok;
        {
          py::gil_scoped_release nogil;
          ok = int8_pack_weights_u7(b.data(), N, K, op);
        }
        if (!ok) return py::none();  // a code outside [-64, 63]: use int8_pack_weights
        return out;
      },
      py::arg("b"), py::arg("N"), py::arg("K"));

  m.def(
      "int8_matmul",
      [](const py::array& a, size_t M, size_t K, int za, const py::array& b_, size_t N, int zb) {
        bool a_signed;
        if (py::isinstance<carray<int8_t>>(a)) a_signed = true;
        else if (py::isinstance<carray<uint8_t>>(a)) a_signed = false;
        else throw std::invalid_argument("a: expected int8 or uint8");
        if (!(a.flags() & py::array::c_style)) throw std::invalid_argument("a: not C-contiguous");
        carray<int8_t> b = require<int8_t>(b_, "b");
        if (static_cast<size_t>(a.size()) != M * K) throw std::invalid_argument("a: size is not M * K");
        if (static_cast<size_t>(b.size()) != N * K) throw std::invalid_argument("b: size is not N * K");
        if (za < -255 || za > 255 || zb < -255 || zb > 255) throw std::invalid_argument("zero point out of range");
        carray<int32_t> out(static_cast<py::ssize_t>(M * N));
        const uint8_t* ap = static_cast<const uint8_t*>(a.data());
        int32_t* op = out.mutable_data();
        {
          py::gil_scoped_release nogil;
          int8_matmul(ap, a_signed, M, K, za, b.data(), N, zb, op);
        }
        return out;
      },
      py::arg("a"), py::arg("M"), py::arg("K"), py::arg("za"), py::arg("b"), py::arg("N"), py::arg("zb"));

  m.def(
      "int8_linear",
      [](const py::array& x_, size_t M, size_t K, const py::array& packed_, size_t N, const py::array& sb_,
         bool sb_per_channel, py::object bias_, bool want_y, bool want_acc) {
        carray<float> x = require<float>(x_, "x");
        // int8: int8_pack_weights' layout; uint8: int8_pack_weights_u7's
        const bool u7 = py::isinstance<carray<uint8_t>>(packed_);
        if (!u7 && !py::isinstance<carray<int8_t>>(packed_))
          throw std::invalid_argument("packed: expected the int8 (int16 layout) or uint8 (u7 layout) packing");
        if (!(packed_.flags() & py::array::c_style)) throw std::invalid_argument("packed: not C-contiguous");
        carray<float> sb = require<float>(sb_, "sb");
        if (static_cast<size_t>(x.size()) != M * K) throw std::invalid_argument("x: size is not M * K");
        if (static_cast<size_t>(packed_.size()) != (u7 ? int8_u7_packed_bytes(N, K) : int8_packed_bytes(N, K)))
          throw std::invalid_argument("packed: size does not match (N, K)");
        if (static_cast<size_t>(sb.size()) != (sb_per_channel ? N : 1)) throw std::invalid_argument("sb: wrong size");
        const float* bp = nullptr;
        carray<float> bias;
        if (!bias_.is_none()) {
          bias = require<float>(bias_, "bias");
          if (static_cast<size_t>(bias.size()) != N) throw std::invalid_argument("bias: need N values");
          bp = bias.data();
        }
        py::object y = py::none(), acc = py::none();
        float* yp = nullptr;
        int32_t* accp = nullptr;
        if (want_y) {
          carray<float> ya(static_cast<py::ssize_t>(M * N));
          yp = ya.mutable_data();
          y = ya;
        }
        if (want_acc) {
          carray<int32_t> aa(static_cast<py::ssize_t>(M * N));
          accp = aa.mutable_data();
          acc = aa;
        }
        carray<float> s(static_cast<py::ssize_t>(M));
        float* sp = s.mutable_data();
        {
          py::gil_scoped_release nogil;
          int8_linear(x.data(), M, K, packed_.data(), u7, N, sb.data(), sb_per_channel, bp, yp, accp, sp);
        }
        return py::make_tuple(y, acc, s);
      },
      py::arg("x"), py::arg("M"), py::arg("K"), py::arg("packed"), py::arg("N"), py::arg("sb"),
      py::arg("sb_per_channel"), py::arg("bias"), py::arg("want_y"), py::arg("want_acc"));
}
