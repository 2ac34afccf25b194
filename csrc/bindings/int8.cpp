// Bindings for the int8 GEMM / linear family (csrc/int8/int8.h documents layouts and formulas).
#include "int8/int8.h"

#include "bindings/registry.h"

using namespace lowbit;

namespace {

// The active variant's tile for a layout name, or a ValueError naming what it reads.
const Int8Tile& active_tile(const std::string& name) { return int8_require(int8_kernels(), name); }

py::dict layout_dict(const Int8Layout& l) {
  py::dict d;
  d["name"] = l.name;
  d["nr"] = l.nr;
  d["mr"] = l.mr;
  d["kgroup"] = l.kgroup;
  d["woffset"] = l.woffset;
  d["wmin"] = l.wmin;
  d["wmax"] = l.wmax;
  d["operand"] = l.a == Int8Operand::kI16 ? "int16" : "int8";
  return d;
}

}  // namespace

LOWBIT_BINDINGS(int8) {
  // The layouts the active int8 variant reads: {"variant", "wide": {...}, "narrow": {...}}.
  m.def("int8_layouts", [] {
    const Int8Kernels& k = int8_kernels();
    py::dict d;
    d["variant"] = isa_name(int8_family.active());
    d["wide"] = layout_dict(k.wide.layout);
    d["narrow"] = layout_dict(k.narrow.layout);
    return d;
  });
  // The layout the active variant packs weights with codes in [lo, hi] for.
  m.def(
      "int8_pick_layout", [](int lo, int hi) { return std::string(int8_pick(int8_kernels(), lo, hi).layout.name); },
      py::arg("lo"), py::arg("hi"));
  m.def(
      "int8_packed_bytes",
      [](const std::string& layout, size_t N, size_t K) { return int8_packed_bytes(active_tile(layout).layout, N, K); },
      py::arg("layout"), py::arg("N"), py::arg("K"));

  m.def(
      "int8_pack_weights",
      [](const py::array& b_, size_t N, size_t K, const std::string& layout) {
        const Int8Layout l = active_tile(layout).layout;
        carray<int8_t> b = require<int8_t>(b_, "b");
        if (static_cast<size_t>(b.size()) != N * K) throw std::invalid_argument("b: size is not N * K");
        const int8_t* bp = b.data();
        for (size_t i = 0; i < N * K; ++i)
          if (bp[i] < l.wmin || bp[i] > l.wmax)
            throw std::invalid_argument("b: code " + std::to_string(bp[i]) + " outside the range [" +
                                        std::to_string(l.wmin) + ", " + std::to_string(l.wmax) + "] of layout '" +
                                        l.name + "'");
        auto out = cached_array<uint8_t>({static_cast<py::ssize_t>(int8_packed_bytes(l, N, K))});
        uint8_t* op = out.mutable_data();
        {
          py::gil_scoped_release nogil;
          int8_pack_weights(l, bp, N, K, op);
        }
        return out;
      },
      py::arg("b"), py::arg("N"), py::arg("K"), py::arg("layout"));

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
      [](const py::array& x_, size_t M, size_t K, const py::array& packed_, const std::string& layout, size_t N,
         const py::array& sb_, bool sb_per_channel, py::object bias_, bool want_y, bool want_acc) {
        carray<float> x = require<float>(x_, "x");
        carray<uint8_t> packed = require<uint8_t>(packed_, "packed");
        carray<float> sb = require<float>(sb_, "sb");
        if (static_cast<size_t>(x.size()) != M * K) throw std::invalid_argument("x: size is not M * K");
        // a layout the active variant does not read is refused (here and again in int8_linear,
        // against the table it runs; layout names are unique, so the size check holds for both)
        if (static_cast<size_t>(packed.size()) != int8_packed_bytes(int8_require(int8_kernels(), layout).layout, N, K))
          throw std::invalid_argument("packed: size does not match (N, K) in layout '" + layout + "'");
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
          int8_linear(x.data(), M, K, packed.data(), layout, N, sb.data(), sb_per_channel, bp, yp, accp, sp);
        }
        return py::make_tuple(y, acc, s);
      },
      py::arg("x"), py::arg("M"), py::arg("K"), py::arg("packed"), py::arg("layout"), py::arg("N"), py::arg("sb"),
      py::arg("sb_per_channel"), py::arg("bias"), py::arg("want_y"), py::arg("want_acc"));
}
