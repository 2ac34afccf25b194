// Small shared helpers for kernel drivers (baseline code, no ISA flags).
#pragma once
#include <cfloat>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace lowbit {

// Thrown by a driver when the input holds NaN or +-Inf. The Python layer turns
// it into a ValueError that says where the first such value is.
struct NonFiniteError : std::invalid_argument {
  NonFiniteError() : std::invalid_argument("input contains NaN or Inf") {}
};

inline size_t ceil_div(size_t a, size_t b) { return (a + b - 1) / b; }

}  // namespace lowbit
