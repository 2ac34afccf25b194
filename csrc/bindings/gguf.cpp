// Bindings for the GGUF block formats (csrc/gguf/gguf.h documents the layout).
#include "gguf/gguf.h"

#include <string>

#include "bindings/registry.h"

namespace lowbit {
namespace {

GgufType gguf_type(const std::string& name) {
  for (int t = 0; t < kGgufTypeCount; ++t)
    if (name == kGgufTraits[t].name) return static_cast<GgufType>(t);
  throw std::invalid_argument("unknown GGUF block format '" + name + "'");
}

}  // namespace
}  // namespace lowbit

using namespace lowbit;

LOWBIT_BINDINGS(gguf) {
  m.def(
      "gguf_quantize",
      [](const py::array& x_, const std::string& fmt) {
        carray<float> x = require<float>(x_, "x");
        const GgufType t = gguf_type(fmt);
        const size_t block = kGgufTraits[t].block, n = static_cast<size_t>(x.size());
        if (n % block) throw std::invalid_argument("x: size is not a whole number of blocks");
        const size_t nblocks = n / block;
        carray<uint8_t> out(static_cast<py::ssize_t>(nblocks * kGgufTraits[t].bytes));
        uint8_t* op = out.mutable_data();
        const float* xp = x.data();
        {
          py::gil_scoped_release nogil;
          gguf_quantize(t, xp, nblocks, op);
        }
        return out;
      },
      py::arg("x"), py::arg("fmt"));

  m.def(
      "gguf_dequantize",
      [](const py::array& blob_, const std::string& fmt) {
        carray<uint8_t> blob = require<uint8_t>(blob_, "blob");
        const GgufType t = gguf_type(fmt);
        const size_t bytes = kGgufTraits[t].bytes, n = static_cast<size_t>(blob.size());
        if (n % bytes) throw std::invalid_argument("blob: size is not a whole number of blocks");
        const size_t nblocks = n / bytes;
        carray<float> out(static_cast<py::ssize_t>(nblocks * kGgufTraits[t].block));
        float* op = out.mutable_data();
        const uint8_t* bp = blob.data();
        {
          py::gil_scoped_release nogil;
          gguf_dequantize(t, bp, nblocks, op);
        }
        return out;
      },
      py::arg("blob"), py::arg("fmt"));
}
