// Driver of the ternary family: packing into the kernel layout, per-token
// activation quantization, and the matmuls split over threads by output channel.
#include "ternary/ternary.h"

#include "act/act.h"
#include "act/act_ops.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <vector>

#include "core/common.h"
#include "core/parallel.h"

namespace lowbit {

LOWBIT_KERNEL_FAMILY_INSTANCE(ternary);


namespace {

constexpr size_t kRowUnit = 8;   // output channels per parallel work item
constexpr size_t kNBlock = 64;   // output channels per int32 staging block (float path)

// Work items of kRowUnit output rows; at least ~2^18 multiply-adds per chunk.
size_t row_grain(size_t M, size_t K) {
  size_t per_item = std::max<size_t>(1, M * K * kRowUnit);
  return std::max<size_t>(1, (size_t(1) << 18) / per_item);
}

// Per-thread working memory of the kernels: cache-line aligned, not zeroed (the kernels
// write before they read; zeroing 32+ KiB per work item cost more than a small-M work
// item's arithmetic).
using Scratch = AlignedVector<unsigned char>;

}  // namespace

bool tl_pack(const int8_t* codes, size_t N, size_t K, int bits, uint8_t* packed) {
  const size_t ldw = tl_row_bytes(K, bits), KB = tl_block(bits);
  std::atomic<bool> ok{true};
  parallel_for(N, 64, [&](size_t n0, size_t n1) {
    for (size_t n = n0; n < n1; ++n) {
      const int8_t* c = codes + n * K;
      uint8_t* out = packed + n * ldw;
      std::memset(out, 0, ldw);
      for (size_t k = 0; k < K; ++k) {
        int v = c[k];
        unsigned u;
        if (bits == 2) {
          if (v < -1 || v > 1) { ok = false; return; }
          u = static_cast<unsigned>(v + 1);
        } else {
          if (v != -1 && v != 1) { ok = false; return; }
          u = v > 0 ? 1u : 0u;
        }
        size_t b = k / KB, r = k % KB;
        out[b * 32 + r % 32] |= static_cast<uint8_t>(u << (bits * static_cast<int>(r / 32)));
      }
    }
  });
  return ok;
}

void tl_unpack(const uint8_t* packed, size_t N, size_t K, int bits, int8_t* codes) {
  const size_t ldw = tl_row_bytes(K, bits), KB = tl_block(bits);
  const unsigned mask = (1u << bits) - 1;
  parallel_for(N, 64, [&](size_t n0, size_t n1) {
    for (size_t n = n0; n < n1; ++n) {
      const uint8_t* in = packed + n * ldw;
      for (size_t k = 0; k < K; ++k) {
        size_t b = k / KB, r = k % KB;
        unsigned u = (in[b * 32 + r % 32] >> (bits * static_cast<int>(r / 32))) & mask;
        codes[n * K + k] = static_cast<int8_t>(bits == 2 ? static_cast<int>(u) - 1 : 2 * static_cast<int>(u) - 1);
      }
    }
  });
}

void tl_matmul_s32(const int8_t* qx, size_t M, size_t K, const uint8_t* packed, size_t N, int bits,
                   int32_t* acc) {
  if (M == 0 || N == 0) return;
  const size_t ldw = tl_row_bytes(K, bits), nblocks = ldw / 32;
  if (K == 0) {
    std::fill(acc, acc + M * N, 0);
    return;
  }
  const TernaryKernels& kern = ternary_kernels();
  const size_t ldq = nblocks * tl_block(bits);
  AlignedVector<int8_t> padded;
  const int8_t* q = qx;
  if (ldq != K || reinterpret_cast<uintptr_t>(qx) % 64 != 0) {  // padded rows, cache-line aligned
    padded.resize(M * ldq);
    for (size_t m = 0; m < M; ++m) {
      std::memcpy(&padded[m * ldq], qx + m * K, K);
      std::memset(&padded[m * ldq + K], 0, ldq - K);
    }
    q = padded.data();
  }
  std::vector<int32_t> qsum(M);
  for (size_t m = 0; m < M; ++m) qsum[m] = kern.sum_s8(qx + m * K, K);
  parallel_for(ceil_div(N, kRowUnit), row_grain(M, K), [&](size_t b, size_t e) {
    size_t n0 = b * kRowUnit, n1 = std::min(N, e * kRowUnit);
    Scratch scratch(tl_scratch_bytes(M));
    kern.gemm(bits, q, M, ldq, qsum.data(), packed, ldw, nblocks, n0, n1, acc + n0, N, scratch.data());
  });
}

void tl_matmul_f32(const float* x, size_t M, size_t K, const uint8_t* packed, size_t N, int bits,
                   const float* gw, size_t gw_stride, const float* bias, float* y) {
  if (M == 0 || N == 0) return;
  const TernaryKernels& kern = ternary_kernels();
  const size_t ldw = tl_row_bytes(K, bits), nblocks = ldw / 32;
  const size_t ldq = nblocks * tl_block(bits);
  AlignedVector<int8_t> q(M * std::max<size_t>(ldq, 1));
  std::vector<float> sx(M);
  std::vector<int32_t> qsum(M);
  const ActKernels& act = act_kernels();
  std::atomic<bool> ok{true};
  parallel_for(M, std::max<size_t>(1, 65536 / std::max<size_t>(K, 1)), [&](size_t m0, size_t m1) {
    for (size_t m = m0; m < m1; ++m) {
      float amax;
      if (!act.absmax(x + m * K, K, &amax)) {
        ok = false;
        return;
      }
      sx[m] = act_scale(amax, 127);  // SPEC 5: s = 127 / max(max|x|, 1e-5)
      int8_t* qm = q.data() + m * ldq;
      act.quantize(x + m * K, K, sx[m], -128, 127, qm);
      std::memset(qm + K, 0, ldq - K);
      qsum[m] = kern.sum_s8(qm, K);
    }
  });
  if (!ok) throw NonFiniteError();
  parallel_for(ceil_div(N, kRowUnit), row_grain(M, K), [&](size_t b, size_t e) {
    const size_t n0 = b * kRowUnit, n1 = std::min(N, e * kRowUnit);
    std::vector<int32_t> stage(M * kNBlock);
    Scratch scratch(tl_scratch_bytes(M));
    for (size_t nb = n0; nb < n1; nb += kNBlock) {
      const size_t ne = std::min(n1, nb + kNBlock), w = ne - nb;
      if (nblocks) kern.gemm(bits, q.data(), M, ldq, qsum.data(), packed, ldw, nblocks, nb, ne, stage.data(), kNBlock,
                             scratch.data());
      else std::fill(stage.begin(), stage.end(), 0);
      for (size_t m = 0; m < M; ++m)
        kern.epilogue(stage.data() + m * kNBlock, w, sx[m], gw + nb * gw_stride, gw_stride,
                      bias ? bias + nb : nullptr, y + m * N + nb);
    }
  });
}

}  // namespace lowbit
