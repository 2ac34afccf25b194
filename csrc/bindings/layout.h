// Parsing of the affine group layout passed from Python (see csrc/affine/affine.h).
#pragma once
#include <stdexcept>
#include <string>

#include "affine/affine.h"

namespace lowbit {

inline AffineLayout parse_layout(const std::string& kind, size_t a, size_t b, size_t c) {
  AffineLayout L;
  if (kind == "groups") {
    L.kind = AffineLayout::groups;
    if (c == 0 && a * b != 0) throw std::invalid_argument("group size must be >= 1");
  } else if (kind == "cols") {
    L.kind = AffineLayout::cols;
  } else if (kind == "channels") {
    L.kind = AffineLayout::channels;
  } else {
    throw std::invalid_argument("unknown layout '" + kind + "'");
  }
  L.a = a, L.b = b, L.c = c;
  return L;
}

}  // namespace lowbit
