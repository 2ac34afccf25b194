// Bindings for the ternary family (csrc/ternary/ternary.h documents the layouts).
#include "core/common.h"
#include "ternary/ternary.h"

#include "bindings/registry.h"

using namespace lowbit;

namespace {

int check_tl_bits(int bits) {
  if (bits != 1 && bits != 2) throw std::invalid_argument("bits must be 1 (binary) or 2 (ternary)");
  return bits;
}

void check_k(size_t K) {
  if (K > kTernaryMaxK)
    throw std::invalid_argument("K = " + std::to_string(K) + " is above " + std::to_string(kTernaryMaxK) +
                                ", the limit for exact int32 accumulation");
}

void check_packed(const carray<uint8_t>& w, size_t N, size_t K, int bits) {
  if (w.ndim() != 2 || static_cast<size_t>(w.shape(0)) != N ||
      static_cast<size_t>(w.shape(1)) != tl_row_bytes(K, bits))
    throw std::invalid_argument("packed: shape does not match (N, K)");
}

}  // namespace

LOWBIT_BINDINGS(ternary) {
  m.def("tl_row_bytes", [](size_t K, int bits) { return tl_row_bytes(K, check_tl_bits(bits)); });
  m.def(
      "tl_pack",
      [](const py::array& codes_, int bits) {
        check_tl_bits(bits);
        carray<int8_t> codes = require<int8_t>(codes_, "codes");
        if (codes.ndim() != 2) throw std::invalid_argument("codes: expected a 2-d array");
        size_t N = codes.shape(0), K = codes.shape(1);
        auto out = cached_array<uint8_t>({static_cast<py::ssize_t>(N), static_cast<py::ssize_t>(tl_row_bytes(K, bits))});
        bool ok;
        {
          py::gil_scoped_release nogil;
          ok = tl_pack(codes.data(), N, K, bits, out.mutable_data());
        }
        if (!ok)
          throw std::invalid_argument(bits == 2 ? "codes: values must be in {-1, 0, 1}" : "codes: values must be -1 or 1");
        return out;
      },
      py::arg("codes"), py::arg("bits"));
  m.def(
      "tl_unpack",
      [](const py::array& w_, size_t N, size_t K, int bits) {
        check_tl_bits(bits);
        carray<uint8_t> w = require<uint8_t>(w_, "packed");
        check_packed(w, N, K, bits);
        carray<int8_t> out({static_cast<py::ssize_t>(N), static_cast<py::ssize_t>(K)});
        {
          py::gil_scoped_release nogil;
          tl_unpack(w.data(), N, K, bits, out.mutable_data());
        }
        return out;
      },
      py::arg("packed"), py::arg("N"), py::arg("K"), py::arg("bits"));
  m.def(
      "tl_matmul_s32",
      [](const py::array& qx_, const py::array& w_, size_t N, size_t K, int bits) {
        check_tl_bits(bits);
        carray<int8_t> qx = require<int8_t>(qx_, "qx");
        carray<uint8_t> w = require<uint8_t>(w_, "packed");
        check_packed(w, N, K, bits);
        if (qx.ndim() != 2 || static_cast<size_t>(qx.shape(1)) != K)
          throw std::invalid_argument("qx: expected shape (M, K)");
        check_k(K);
        size_t M = qx.shape(0);
        carray<int32_t> out({static_cast<py::ssize_t>(M), static_cast<py::ssize_t>(N)});
        {
          py::gil_scoped_release nogil;
          tl_matmul_s32(qx.data(), M, K, w.data(), N, bits, out.mutable_data());
        }
        return out;
      },
      py::arg("qx"), py::arg("packed"), py::arg("N"), py::arg("K"), py::arg("bits"));
  m.def(
      "tl_matmul_f32",
      [](const py::array& x_, const py::array& w_, size_t N, size_t K, int bits, const py::array& gw_,
         py::object bias_, py::object out_) {
        check_tl_bits(bits);
        carray<float> x = require<float>(x_, "x");
        carray<uint8_t> w = require<uint8_t>(w_, "packed");
        check_packed(w, N, K, bits);
        if (x.ndim() != 2 || static_cast<size_t>(x.shape(1)) != K)
          throw std::invalid_argument("x: expected shape (M, K)");
        check_k(K);
        size_t M = x.shape(0);
        carray<float> gw = require<float>(gw_, "scale");
        size_t gs;
        if (gw.size() == 1) gs = 0;
        else if (static_cast<size_t>(gw.size()) == N) gs = 1;
        else throw std::invalid_argument("scale: need 1 or N values");
        const float* bp = nullptr;
        carray<float> bias;
        if (!bias_.is_none()) {
          bias = require<float>(bias_, "bias");
          if (static_cast<size_t>(bias.size()) != N) throw std::invalid_argument("bias: need N values");
          bp = bias.data();
        }
        carray<float> out;
        if (out_.is_none()) {
          out = carray<float>({static_cast<py::ssize_t>(M), static_cast<py::ssize_t>(N)});
        } else {
          out = require<float>(out_, "out");
          if (static_cast<size_t>(out.size()) != M * N || !out.writeable())
            throw std::invalid_argument("out: need a writeable (M, N) float32 array");
        }
        float* op = out.mutable_data();
        {
          py::gil_scoped_release nogil;
          tl_matmul_f32(x.data(), M, K, w.data(), N, bits, gw.data(), gs, bp, op);
        }
        return out;
      },
      py::arg("x"), py::arg("packed"), py::arg("N"), py::arg("K"), py::arg("bits"), py::arg("scale"),
      py::arg("bias") = py::none(), py::arg("out") = py::none());
}
