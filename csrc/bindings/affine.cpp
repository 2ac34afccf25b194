// Bindings for the affine family (csrc/affine/affine.h documents the layouts).
#include "affine/affine.h"

#include "bindings/layout.h"
#include "bindings/registry.h"

namespace lowbit {
namespace {

}  // namespace
}  // namespace lowbit

using namespace lowbit;

LOWBIT_BINDINGS(affine) {
  m.def(
      "affine_quantize",
      [](const py::array& x_, const std::string& kind, size_t a, size_t b, size_t c, const std::string& scheme,
         int qmin, int qmax, int absmax_qmax, py::object clip_lo_, py::object clip_hi_) {
        carray<float> x = require<float>(x_, "x");
        AffineLayout L = parse_layout(kind, a, b, c);
        if (static_cast<size_t>(x.size()) != L.numel()) throw std::invalid_argument("x: size does not match layout");
        AffineParams p;
        if (scheme == "absmax") p.scheme = AffineScheme::absmax;
        else if (scheme == "minmax") p.scheme = AffineScheme::minmax;
        else throw std::invalid_argument("unknown scheme '" + scheme + "'");
        if (qmin < -128 || qmax > 255 || qmin >= qmax) throw std::invalid_argument("bad code range");
        p.qmin = qmin, p.qmax = qmax, p.absmax_qmax = absmax_qmax;
        size_t G = L.n_groups();
        const float *clo = nullptr, *chi = nullptr;
        carray<float> clip_lo, clip_hi;
        if (!clip_lo_.is_none()) {
          clip_lo = require<float>(clip_lo_, "clip_lo");
          clip_hi = require<float>(clip_hi_, "clip_hi");
          if (static_cast<size_t>(clip_lo.size()) != G || static_cast<size_t>(clip_hi.size()) != G)
            throw std::invalid_argument("clip arrays need one value per group");
          clo = clip_lo.data(), chi = clip_hi.data();
        }
        py::ssize_t n = static_cast<py::ssize_t>(L.numel());
        py::array codes = qmin < 0 ? py::array(cached_array<int8_t>({n})) : py::array(cached_array<uint8_t>({n}));
        carray<float> scale(static_cast<py::ssize_t>(G));
        carray<int32_t> zp(static_cast<py::ssize_t>(G));
        uint8_t* cp = static_cast<uint8_t*>(codes.mutable_data());
        float* sp = scale.mutable_data();
        int32_t* zpp = zp.mutable_data();
        {
          py::gil_scoped_release nogil;
          affine_quantize(x.data(), L, p, clo, chi, cp, sp, zpp);
        }
        return py::make_tuple(codes, scale, zp);
      },
      py::arg("x"), py::arg("kind"), py::arg("a"), py::arg("b"), py::arg("c"), py::arg("scheme"),
      py::arg("qmin"), py::arg("qmax"), py::arg("absmax_qmax"), py::arg("clip_lo") = py::none(),
      py::arg("clip_hi") = py::none());

  m.def(
      "affine_dequantize",
      [](const py::array& codes, const std::string& kind, size_t a, size_t b, size_t c, const py::array& scale_,
         const py::array& zp_, py::object out_) {
        AffineLayout L = parse_layout(kind, a, b, c);
        bool is_signed;
        if (py::isinstance<carray<int8_t>>(codes)) is_signed = true;
        else if (py::isinstance<carray<uint8_t>>(codes)) is_signed = false;
        else throw std::invalid_argument("codes: expected int8 or uint8");
        if (!(codes.flags() & py::array::c_style)) throw std::invalid_argument("codes: not C-contiguous");
        if (static_cast<size_t>(codes.size()) != L.numel()) throw std::invalid_argument("codes: size does not match layout");
        carray<float> scale = require<float>(scale_, "scale");
        carray<int32_t> zp = require<int32_t>(zp_, "zero_point");
        size_t G = L.n_groups();
        if (static_cast<size_t>(scale.size()) != G || static_cast<size_t>(zp.size()) != G)
          throw std::invalid_argument("scale/zero_point: need one value per group");
        carray<float> out;
        if (out_.is_none()) {
          out = cached_array<float>({static_cast<py::ssize_t>(L.numel())});
        } else {
          out = require<float>(out_, "out");
          if (static_cast<size_t>(out.size()) != L.numel()) throw std::invalid_argument("out: wrong size");
          if (!out.writeable()) throw std::invalid_argument("out: read-only");
        }
        const uint8_t* cp = static_cast<const uint8_t*>(codes.data());
        float* op = out.mutable_data();
        {
          py::gil_scoped_release nogil;
          affine_dequantize(cp, is_signed, L, scale.data(), zp.data(), op);
        }
        return out;
      },
      py::arg("codes"), py::arg("kind"), py::arg("a"), py::arg("b"), py::arg("c"), py::arg("scale"),
      py::arg("zero_point"), py::arg("out") = py::none());

  m.def(
      "affine_range",
      [](const py::array& x_, const std::string& kind, size_t a, size_t b, size_t c) {
        carray<float> x = require<float>(x_, "x");
        AffineLayout L = parse_layout(kind, a, b, c);
        if (static_cast<size_t>(x.size()) != L.numel()) throw std::invalid_argument("x: size does not match layout");
        size_t G = L.n_groups();
        carray<float> lo(static_cast<py::ssize_t>(G)), hi(static_cast<py::ssize_t>(G));
        float *lp = lo.mutable_data(), *hp = hi.mutable_data();
        {
          py::gil_scoped_release nogil;
          affine_range(x.data(), L, lp, hp);
        }
        return py::make_tuple(lo, hi);
      },
      py::arg("x"), py::arg("kind"), py::arg("a"), py::arg("b"), py::arg("c"));
}
