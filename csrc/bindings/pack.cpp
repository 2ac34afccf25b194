// Bindings for the packing family (csrc/pack/pack.h documents the layouts).
// The Python layer (lowbit/packing.py) validates shapes and allocates outputs.
#include "pack/pack.h"

#include "bindings/registry.h"
#include "core/common.h"

using namespace lowbit;

namespace {

const uint8_t* bytes_in(const py::array& a, const char* what) {
  if (!(py::isinstance<carray<uint8_t>>(a) || py::isinstance<carray<int8_t>>(a)) || !(a.flags() & py::array::c_style))
    throw std::invalid_argument(std::string(what) + ": expected a C-contiguous int8 or uint8 array");
  return static_cast<const uint8_t*>(a.data());
}

uint8_t* bytes_out(py::array& a, const char* what) {
  if (!(py::isinstance<carray<uint8_t>>(a) || py::isinstance<carray<int8_t>>(a)) ||
      !(a.flags() & py::array::c_style) || !a.writeable())
    throw std::invalid_argument(std::string(what) + ": expected a writeable C-contiguous int8 or uint8 array");
  return static_cast<uint8_t*>(a.mutable_data());
}

void check_sizes(const py::array& codes, const py::array& packed, size_t rows, size_t n, size_t row_bytes) {
  if (static_cast<size_t>(codes.size()) != rows * n) throw std::invalid_argument("codes: size is not rows * n");
  if (static_cast<size_t>(packed.size()) != rows * row_bytes)
    throw std::invalid_argument("packed: size is not rows * bytes per row");
}

TernaryLayout ternary_layout(int id) {
  if (id == 0) return TernaryLayout::two_bit;
  if (id == 1) return TernaryLayout::base3;
  throw std::invalid_argument("unknown ternary layout");
}

}  // namespace

LOWBIT_BINDINGS(pack) {
  m.def("pack_bits", [](const py::array& codes, size_t rows, size_t n, int bits, bool is_signed, py::array out) {
    if (bits < 1 || bits > 8) throw std::invalid_argument("bits must be in 1..8");
    check_sizes(codes, out, rows, n, ceil_div(n * bits, 8));
    const uint8_t* q = bytes_in(codes, "codes");
    uint8_t* o = bytes_out(out, "out");
    py::gil_scoped_release nogil;
    return pack_bits(q, rows, n, bits, is_signed, o);
  });
  m.def("unpack_bits", [](const py::array& packed, size_t rows, size_t n, int bits, bool is_signed, py::array out) {
    if (bits < 1 || bits > 8) throw std::invalid_argument("bits must be in 1..8");
    check_sizes(out, packed, rows, n, ceil_div(n * bits, 8));
    const uint8_t* p = bytes_in(packed, "packed");
    uint8_t* o = bytes_out(out, "out");
    py::gil_scoped_release nogil;
    return unpack_bits(p, rows, n, bits, is_signed, o);
  });
  m.def("pack_ternary", [](const py::array& codes, size_t rows, size_t n, int layout, py::array out) {
    TernaryLayout L = ternary_layout(layout);
    check_sizes(codes, out, rows, n, L == TernaryLayout::two_bit ? ceil_div(n, 4) : ceil_div(n, 5));
    const int8_t* q = reinterpret_cast<const int8_t*>(bytes_in(codes, "codes"));
    uint8_t* o = bytes_out(out, "out");
    py::gil_scoped_release nogil;
    return pack_ternary(q, rows, n, L, o);
  });
  m.def("unpack_ternary", [](const py::array& packed, size_t rows, size_t n, int layout, py::array out) {
    TernaryLayout L = ternary_layout(layout);
    check_sizes(out, packed, rows, n, L == TernaryLayout::two_bit ? ceil_div(n, 4) : ceil_div(n, 5));
    const uint8_t* p = bytes_in(packed, "packed");
    int8_t* o = reinterpret_cast<int8_t*>(bytes_out(out, "out"));
    py::gil_scoped_release nogil;
    return unpack_ternary(p, rows, n, L, o);
  });
}
