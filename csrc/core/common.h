// Small shared helpers for kernel drivers (baseline code, no ISA flags).
#pragma once
#include <cfloat>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace lowbit {

// Thrown by a driver when the input holds NaN or +-Inf. The Python layer turns
// it into a ValueError that says where the first such value is.
struct NonFiniteError : std::invalid_argument {
  NonFiniteError() : std::invalid_argument("input contains NaN or Inf") {}
};

inline size_t ceil_div(size_t a, size_t b) { return (a + b - 1) / b; }

// Allocator of cache-line-aligned storage for kernel buffers. Kernels read with 32-byte
// loads: malloc aligns to 16 bytes only, and then every other load splits a cache line
// (measured: a quarter of the throughput of the ternary tiles, by chance of the
// allocation). Elements are default-initialized: `AlignedVector<int8_t> v(n)` is NOT
// zeroed (kernel buffers are written before they are read; zeroing them first was a
// second pass over memory); `v.assign(n, 0)` or `v.resize(n, 0)` zero explicitly.
template <class T>
struct CacheAligned {
  using value_type = T;
  static constexpr std::align_val_t kAlign{64};
  CacheAligned() = default;
  template <class U>
  CacheAligned(const CacheAligned<U>&) {}
  T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), kAlign)); }
  void deallocate(T* p, size_t) { ::operator delete(p, kAlign); }
  template <class U>
  void construct(U* p) noexcept {
    ::new (static_cast<void*>(p)) U;
  }
  template <class U, class... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
  template <class U>
  bool operator==(const CacheAligned<U>&) const { return true; }
  template <class U>
  bool operator!=(const CacheAligned<U>&) const { return false; }
};

template <class T>
using AlignedVector = std::vector<T, CacheAligned<T>>;

}  // namespace lowbit
