// Bindings for the GGUF block formats (csrc/gguf/gguf.h documents the layout).
#include "gguf/gguf.h"

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "bindings/registry.h"

namespace lowbit {
namespace {

GgufType gguf_type(const std::string& name) {
  for (int t = 0; t < kGgufTypeCount; ++t)
    if (name == kGgufTraits[t].name) return static_cast<GgufType>(t);
  throw std::invalid_argument("unknown GGUF block format '" + name + "'");
}

// Encodes x (whole blocks of fmt) with llama.cpp's encoder, or with the search encoder
// (search = true); imatrix: n_per_row importance values or None.
carray<uint8_t> quantize_blocks(const py::array& x_, const std::string& fmt, const py::object& imatrix_,
                                size_t n_per_row, bool search) {
  carray<float> x = require<float>(x_, "x");
  const GgufType t = gguf_type(fmt);
  if (!search && !gguf_kernels().quantize[t]) throw std::invalid_argument("no encoder for " + fmt + " (decode only)");
  if (search && !gguf_kernels().search[t]) throw std::invalid_argument("no search encoder for " + fmt);
  const size_t block = kGgufTraits[t].block, n = static_cast<size_t>(x.size());
  if (n % block) throw std::invalid_argument("x: size is not a whole number of blocks");
  carray<float> qw;
  const float* qwp = nullptr;
  if (!imatrix_.is_none()) {
    qw = require<float>(imatrix_.cast<py::array>(), "imatrix");
    if (n_per_row == 0 || n_per_row % block || n % n_per_row || static_cast<size_t>(qw.size()) != n_per_row)
      throw std::invalid_argument("imatrix: needs n_per_row values, n_per_row a multiple of the block");
    qwp = qw.data();
  }
  const size_t nblocks = n / block;
  carray<uint8_t> out(static_cast<py::ssize_t>(nblocks * kGgufTraits[t].bytes));
  uint8_t* op = out.mutable_data();
  const float* xp = x.data();
  {
    py::gil_scoped_release nogil;
    gguf_quantize(t, xp, nblocks, op, n_per_row, qwp, search);
  }
  return out;
}

}  // namespace
}  // namespace lowbit

using namespace lowbit;

LOWBIT_BINDINGS(gguf) {
  m.def(
      "gguf_quantize",
      [](const py::array& x, const std::string& fmt, const py::object& imatrix, size_t n_per_row) {
        return quantize_blocks(x, fmt, imatrix, n_per_row, false);
      },
      py::arg("x"), py::arg("fmt"), py::arg("imatrix") = py::none(), py::arg("n_per_row") = 0);

  m.def(
      "gguf_quantize_search",
      [](const py::array& x, const std::string& fmt, const py::object& imatrix, size_t n_per_row) {
        return quantize_blocks(x, fmt, imatrix, n_per_row, true);
      },
      py::arg("x"), py::arg("fmt"), py::arg("imatrix") = py::none(), py::arg("n_per_row") = 0);

  m.def(
      "gguf_dequantize",
      [](const py::array& blob_, const std::string& fmt) {
        carray<uint8_t> blob = require<uint8_t>(blob_, "blob");
        const GgufType t = gguf_type(fmt);
        if (!gguf_kernels().dequantize[t]) throw std::invalid_argument("no decoder for " + fmt + " in this build");
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

  // Benchmark hook: best time in seconds of one kernel call on the calling thread
  // (active ISA, no thread pool, no Python), for comparing with ggml's
  // test-quantize-perf. Each sample averages `inner` back-to-back calls.
  m.def(
      "gguf_time_kernel",
      [](const py::array& x_, const std::string& fmt, bool quantize, int samples, int inner) {
        const GgufType t = gguf_type(fmt);
        const GgufKernels& k = gguf_kernels();
        if (samples < 1 || inner < 1) throw std::invalid_argument("samples and inner must be >= 1");
        size_t nblocks;
        carray<float> xf;
        carray<uint8_t> xb;
        if (quantize) {
          if (!k.quantize[t]) throw std::invalid_argument("no encoder for " + fmt);
          xf = require<float>(x_, "x");
          nblocks = static_cast<size_t>(xf.size()) / kGgufTraits[t].block;
        } else {
          xb = require<uint8_t>(x_, "x");
          nblocks = static_cast<size_t>(xb.size()) / kGgufTraits[t].bytes;
        }
        std::vector<uint8_t> qbuf(nblocks * kGgufTraits[t].bytes);
        std::vector<float> fbuf(nblocks * kGgufTraits[t].block);
        double best = 1e30;
        py::gil_scoped_release nogil;
        for (int s = 0; s < samples; ++s) {
          auto t0 = std::chrono::steady_clock::now();
          for (int i = 0; i < inner; ++i) {
            if (quantize) k.quantize[t](xf.data(), nblocks, nullptr, qbuf.data());
            else k.dequantize[t](xb.data(), nblocks, fbuf.data());
          }
          auto t1 = std::chrono::steady_clock::now();
          best = std::min(best, std::chrono::duration<double>(t1 - t0).count() / inner);
        }
        return best;
      },
      py::arg("x"), py::arg("fmt"), py::arg("quantize") = true, py::arg("samples") = 200, py::arg("inner") = 16);
}
