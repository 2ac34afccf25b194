// Each family's binding file registers itself with LOWBIT_BINDINGS(name) { ... };
// module.cpp runs them all. Adding a family needs no edit here.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>

namespace lowbit {

namespace py = pybind11;
using BindFn = void (*)(py::module_&);

struct BindingRegistrar {
  BindingRegistrar(const char* name, BindFn fn);
};

// Arrays that cross the boundary: the Python layer validates dtype, shape and
// contiguity first; these checks only guard the native side against misuse.
template <class T>
using carray = py::array_t<T, py::array::c_style>;

template <class T>
carray<T> require(const py::array& a, const char* what) {
  if (!py::isinstance<carray<T>>(a) || !(a.flags() & py::array::c_style))
    throw std::invalid_argument(std::string(what) + ": expected a C-contiguous array of " +
                                py::str(py::dtype::of<T>()).cast<std::string>());
  return py::reinterpret_borrow<carray<T>>(a);
}

}  // namespace lowbit

#define LOWBIT_BINDINGS(name)                                                              \
  static void lowbit_bind_##name(::lowbit::py::module_& m);                                \
  static ::lowbit::BindingRegistrar lowbit_registrar_##name(#name, &lowbit_bind_##name);   \
  static void lowbit_bind_##name(::lowbit::py::module_& m)
