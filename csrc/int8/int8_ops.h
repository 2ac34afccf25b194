// Code shared by the int8 variants, compiled by each with its own ISA flags (so it lives
// in an anonymous namespace: one private copy per variant file).
#pragma once
#include <cstring>

#include "int8/int8.h"

namespace lowbit {
namespace {

// The epilogue (Int8Epilogue, int8.h) on a tile's rows for nc channels: NC if NC > 0 (the
// full panel: fixed trip counts, so the loops vectorize without remainders), else nc.
// Branch-free inner loops; the arithmetic is the scalar one: wrapping int32 via uint32,
// one float32 multiply for the scale, one for the value, one add for the bias (no FMA:
// -ffp-contract=off).
template <size_t NC>
inline void int8_epilogue_rows(const Int8Epilogue& e, const int32_t* c, size_t ldc, size_t m0, int mr, size_t n0,
                               size_t nc_) {
  const size_t nc = NC > 0 ? NC : nc_;
  const int32_t* __restrict colcorr = e.colcorr ? e.colcorr + n0 : nullptr;
  const float* __restrict sb = e.sb_per_channel ? e.sb + n0 : nullptr;
  const float* __restrict bias = e.bias ? e.bias + n0 : nullptr;
  for (int r = 0; r < mr; ++r) {
    const size_t m = m0 + r;
    const uint32_t* __restrict cr = reinterpret_cast<const uint32_t*>(c + r * ldc);
    const uint32_t corr = e.rowfactor ? static_cast<uint32_t>(e.rowfactor) * static_cast<uint32_t>(e.rowsum[m]) : 0u;
    alignas(64) int32_t v[kInt8MaxNR];
    if (colcorr) {
      for (size_t j = 0; j < nc; ++j) v[j] = static_cast<int32_t>(cr[j] - corr + static_cast<uint32_t>(colcorr[j]));
    } else {
      for (size_t j = 0; j < nc; ++j) v[j] = static_cast<int32_t>(cr[j] - corr);
    }
    if (e.acc) std::memcpy(e.acc + m * e.N + n0, v, nc * sizeof(int32_t));
    if (!e.y) continue;
    float* __restrict yr = e.y + m * e.N + n0;
    const float am = e.sa[m];
    if (sb) {
      if (bias) {
        for (size_t j = 0; j < nc; ++j) yr[j] = (am * sb[j]) * static_cast<float>(v[j]) + bias[j];
      } else {
        for (size_t j = 0; j < nc; ++j) yr[j] = (am * sb[j]) * static_cast<float>(v[j]);
      }
    } else {
      const float scale = am * e.sb[0];
      if (bias) {
        for (size_t j = 0; j < nc; ++j) yr[j] = scale * static_cast<float>(v[j]) + bias[j];
      } else {
        for (size_t j = 0; j < nc; ++j) yr[j] = scale * static_cast<float>(v[j]);
      }
    }
  }
}

// Int8EpilogueFn (int8.h) for a variant whose panels hold NR channels.
template <size_t NR>
void int8_epilogue(const Int8Epilogue& e, const int32_t* c, size_t ldc, size_t m0, int mr, size_t n0, size_t nc) {
  static_assert(NR <= kInt8MaxNR, "panel wider than kInt8MaxNR");
  if (nc == NR) return int8_epilogue_rows<NR>(e, c, ldc, m0, mr, n0, nc);
  int8_epilogue_rows<0>(e, c, ldc, m0, mr, n0, nc);
}

// Int8RowSumFn (int8.h): a plain loop the compiler vectorizes (wrapping via uint32).
[[maybe_unused]] int32_t int8_rowsum(const int8_t* a, size_t n) {
  uint32_t s = 0;
  for (size_t k = 0; k < n; ++k) s += static_cast<uint32_t>(static_cast<int32_t>(a[k]));
  return static_cast<int32_t>(s);
}

}  // namespace
}  // namespace lowbit
