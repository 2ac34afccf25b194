// Non-uniform (codebook) quantization: nearest-code lookup, dequantization by
// table, and 1-D k-means. SPEC 9; python/lowbit/reference/codebook.py is the
// literal definition.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/dispatch.h"

namespace lowbit {

struct CodebookKernels {
  // out[i] = argmin_j |x[i] / scale - cb[j]| in float32, the lowest j on ties;
  // cb is sorted ascending (non-decreasing), k <= 256 codes.
  void (*quantize)(const float* x, size_t n, float scale, const float* cb, size_t k, uint8_t* out);
  // out[i] = scale * cb[q[i]].
  void (*dequantize)(const uint8_t* q, size_t n, float scale, const float* cb, float* out);
  // Lloyd assignment: j = count of t < k-1 with mid[t] < x[i] (mid sorted);
  // cnt[j] += 1, sum[j] += x[i] in order (accumulates).
  void (*assign)(const float* x, size_t n, const float* mid, size_t k, uint64_t* cnt, double* sum);
};

// Variants: one file each (codebook_<isa>.cpp), one word each here (core/dispatch.h).
LOWBIT_KERNEL_FAMILY(codebook, CodebookKernels, scalar, avx2);

// ---- driver (codebook.cpp) -------------------------------------------------
//
// x is rows x len (flattened C-contiguous), split into groups of `group`
// consecutive values along each row (the last group of a row may be shorter);
// n_groups = rows * ceil(len / group). Group g uses scale[g] and the codebook
// cb + (cb_per_group ? g * k : 0).
struct CodebookLayout {
  size_t rows = 0, len = 0, group = 1, k = 0;
  bool cb_per_group = false;
  size_t n_groups() const { return len == 0 ? 0 : rows * ((len + group - 1) / group); }
};

// absmax_scaled: scale[g] = max(float32(max|x_g| / cb_maxabs), FLT_MIN) is computed and written;
// else scale[] is read. Throws NonFiniteError for NaN/Inf input.
// absmax_scaled: scale[g] = max(float32(max|x_g| / cb_maxabs), FLT_MIN) is computed
// and written (NF4 and other normalized codebooks); else scale[] is read.
// Throws NonFiniteError for NaN/Inf input.
void codebook_quantize(const float* x, const CodebookLayout& L, const float* cb, bool absmax_scaled,
                       float cb_maxabs, float* scale, uint8_t* codes);
void codebook_dequantize(const uint8_t* codes, const CodebookLayout& L, const float* scale, const float* cb,
                         float* out);

// k-means codebooks (k sorted float32 centroids) for `rows` independent rows of
// `len` values each (one row = the whole tensor for a per-tensor codebook).
// Rows of at most kKmeansExact values are solved exactly (dynamic programming on
// the sorted distinct values, Wang & Song 2011); longer rows start from the exact
// optimum of a 65536-bin histogram and run Lloyd steps on the raw values.
constexpr size_t kKmeansExact = 1 << 16;
void kmeans_1d(const float* x, size_t rows, size_t len, size_t k, float* centroids);

}  // namespace lowbit
