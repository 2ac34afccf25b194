// Each family's binding file registers itself with LOWBIT_BINDINGS(name) { ... };
// module.cpp runs them all. Adding a family needs no edit here.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/buffers.h"

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

// A new C-contiguous array whose memory comes from the output-buffer cache
// (core/buffers.h) and goes back to it when NumPy frees the array.
inline void release_cached_capsule(PyObject* cap) {
  void* p = PyCapsule_GetPointer(cap, "lowbit.buffer");
  buffer_release(p, reinterpret_cast<size_t>(PyCapsule_GetContext(cap)));
}

template <class T>
carray<T> cached_array(const std::vector<py::ssize_t>& shape) {
  size_t n = sizeof(T);
  for (py::ssize_t d : shape) n *= static_cast<size_t>(d);
  void* p = buffer_acquire(n);
  PyObject* cap = PyCapsule_New(p, "lowbit.buffer", release_cached_capsule);
  if (!cap || PyCapsule_SetContext(cap, reinterpret_cast<void*>(n)) != 0) {
    if (cap) PyCapsule_SetDestructor(cap, nullptr), Py_DECREF(cap);
    buffer_release(p, n);
    throw py::error_already_set();
  }
  return carray<T>(shape, static_cast<T*>(p), py::reinterpret_steal<py::capsule>(cap));
}

}  // namespace lowbit

#define LOWBIT_BINDINGS(name)                                                              \
  static void lowbit_bind_##name(::lowbit::py::module_& m);                                \
  static ::lowbit::BindingRegistrar lowbit_registrar_##name(#name, &lowbit_bind_##name);   \
  static void lowbit_bind_##name(::lowbit::py::module_& m)
