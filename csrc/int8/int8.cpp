// int8 GEMM / linear driver: widening, packing, blocking, threads and the epilogue.
// Baseline code (no ISA flags); the inner products are the Int8Kernels' tiles.
#include "int8/int8.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <vector>

#include "act/act.h"
#include "core/common.h"
#include "core/parallel.h"

namespace lowbit {

LOWBIT_KERNEL_FAMILY_INSTANCE(int8);


namespace {

constexpr size_t kPanelsPerBlock = 4;  // n-block: 64 channels, K * 64 bytes of weights kept in L2
constexpr size_t kRowsPerBlock = 96;   // m-block: rows of A swept over one n-block

// a (M, K) int8/uint8 -> w (M, Kp) int16 = a - za, zero-padded; rowsum[m] = sum_k w (if not null).
void widen_rows(const uint8_t* a, bool a_signed, size_t M, size_t K, int32_t za, int16_t* w, int32_t* rowsum) {
  size_t Kp = int8_kpad(K);
  parallel_for(M, std::max<size_t>(1, (size_t{1} << 15) / std::max<size_t>(K, 1)), [&](size_t b, size_t e) {
    for (size_t m = b; m < e; ++m) {
      const uint8_t* src = a + m * K;
      int16_t* dst = w + m * Kp;
      if (a_signed) {
        const int8_t* s8 = reinterpret_cast<const int8_t*>(src);
        for (size_t k = 0; k < K; ++k) dst[k] = static_cast<int16_t>(s8[k] - za);
      } else {
        for (size_t k = 0; k < K; ++k) dst[k] = static_cast<int16_t>(src[k] - za);
      }
      if (Kp != K) dst[K] = 0;
      if (rowsum) {
        int32_t s = 0;
        for (size_t k = 0; k < K; ++k) s += dst[k];
        rowsum[m] = s;
      }
    }
  });
}

// What to do with a finished tile of accumulators.
struct Epilogue {
  size_t N = 0;
  int32_t zb = 0;
  const int32_t* rowsum = nullptr;  // needed when zb != 0
  int32_t* acc = nullptr;           // (M, N) int32 out, or null
  float* y = nullptr;               // (M, N) float32 out, or null
  const float* sa = nullptr;        // (M,)
  const float* sb = nullptr;        // (N,) or (1,)
  bool sb_per_channel = false;
  const float* bias = nullptr;      // (N,) or null

  void apply(const int32_t* c, size_t m0, int mr, size_t n0, size_t nc) const {
    for (int r = 0; r < mr; ++r) {
      size_t m = m0 + r;
      const int32_t* cr = c + r * kInt8NR;
      // acc = dot - zb * rowsum, in wrapping int32 arithmetic
      uint32_t corr = rowsum ? static_cast<uint32_t>(zb) * static_cast<uint32_t>(rowsum[m]) : 0u;
      int32_t vals[kInt8NR];
      for (size_t j = 0; j < nc; ++j) vals[j] = static_cast<int32_t>(static_cast<uint32_t>(cr[j]) - corr);
      if (acc) std::memcpy(acc + m * N + n0, vals, nc * sizeof(int32_t));
      if (y) {
        float* yr = y + m * N + n0;
        float am = sa[m];
        for (size_t j = 0; j < nc; ++j) {
          float scale = am * (sb_per_channel ? sb[n0 + j] : sb[0]);
          float v = scale * static_cast<float>(vals[j]);
          yr[j] = bias ? v + bias[n0 + j] : v;
        }
      }
    }
  }
};

// C = A x packed B, tile by tile, results handed to the epilogue. tile(m, mr, p, c) fills
// c with the mr x 16 tile of rows m.. and panel p.
template <class Tile>
void gemm(size_t M, const Epilogue& ep, const Tile& tile) {
  size_t N = ep.N;
  size_t NP = int8_panels(N), NB = ceil_div(NP, kPanelsPerBlock), MB = ceil_div(M, kRowsPerBlock);
  parallel_for(NB * MB, 1, [&](size_t tb, size_t te) {
    alignas(32) int32_t c[kInt8MR * kInt8NR];
    for (size_t t = tb; t < te; ++t) {
      size_t nb = t / MB, mb = t % MB;
      size_t p0 = nb * kPanelsPerBlock, p1 = std::min(NP, p0 + kPanelsPerBlock);
      size_t m0 = mb * kRowsPerBlock, m1 = std::min(M, m0 + kRowsPerBlock);
      // split the block's rows into tiles of near-equal height <= kInt8MR
      size_t rows = m1 - m0, ntiles = ceil_div(rows, kInt8MR);
      size_t m = m0;
      for (size_t ti = 0; ti < ntiles; ++ti) {
        int mr = static_cast<int>(ceil_div(m1 - m, ntiles - ti));
        for (size_t p = p0; p < p1; ++p) {
          tile(m, mr, p, c);
          size_t n0 = p * kInt8NR;
          ep.apply(c, m, mr, n0, std::min(kInt8NR, N - n0));
        }
        m += mr;
      }
    }
  });
}

// int16 layout: A (M, Kp) int16.
void gemm_i16(const int16_t* A, size_t M, size_t K, const int8_t* packed, const Epilogue& ep) {
  const Int8Kernels& k = int8_kernels();
  size_t Kp = int8_kpad(K), kpairs = Kp / 2, panel_bytes = kInt8NR * Kp;
  gemm(M, ep, [&](size_t m, int mr, size_t p, int32_t* c) {
    k.tile(A + m * Kp, Kp, mr, packed + p * panel_bytes, kpairs, c);
  });
}

// u7 layout on int8 rows a (M, K): pads K to a multiple of 4 (a copy only when K is not
// one), and removes the offset u = B + 64 as a zero point: acc = dot - 64 * rowsum(a).
void gemm_u7(const int8_t* a, size_t M, size_t K, const uint8_t* packed, Epilogue ep) {
  const Int8Kernels& k = int8_kernels();
  const size_t Kq = int8_kquad(K), kquads = Kq / 4, panel_bytes = kInt8NR * Kq;
  AlignedVector<int8_t> padded(Kq != K ? M * Kq : 0);
  std::vector<int32_t> rowsum(M);
  const int8_t* A = Kq != K ? padded.data() : a;
  parallel_for(M, std::max<size_t>(1, (size_t{1} << 15) / std::max<size_t>(K, 1)), [&](size_t b, size_t e) {
    for (size_t m = b; m < e; ++m) {
      const int8_t* src = a + m * K;
      if (Kq != K) {
        std::memcpy(padded.data() + m * Kq, src, K);
        std::memset(padded.data() + m * Kq + K, 0, Kq - K);
      }
      int32_t s = 0;
      for (size_t i = 0; i < K; ++i) s += src[i];
      rowsum[m] = s;
    }
  });
  ep.zb = kInt8U7Offset;
  ep.rowsum = rowsum.data();
  gemm(M, ep, [&](size_t m, int mr, size_t p, int32_t* c) {
    k.tile_u7(A + m * Kq, Kq, mr, packed + p * panel_bytes, kquads, c);
  });
}

}  // namespace

void int8_pack_weights(const int8_t* b, size_t N, size_t K, int8_t* out) {
  size_t Kp = int8_kpad(K), NP = int8_panels(N), panel_bytes = kInt8NR * Kp;
  parallel_for(NP, 1, [&](size_t pb, size_t pe) {
    for (size_t p = pb; p < pe; ++p) {
      int8_t* dst = out + p * panel_bytes;
      std::memset(dst, 0, panel_bytes);
      for (size_t j = 0; j < kInt8NR; ++j) {
        size_t n = p * kInt8NR + j;
        if (n >= N) break;
        const int8_t* row = b + n * K;
        for (size_t k = 0; k < K; ++k) dst[(k / 2) * 2 * kInt8NR + 2 * j + (k & 1)] = row[k];
      }
    }
  });
}

bool int8_pack_weights_u7(const int8_t* b, size_t N, size_t K, uint8_t* out) {
  size_t Kq = int8_kquad(K), NP = int8_panels(N), panel_bytes = kInt8NR * Kq;
  std::atomic<bool> ok{true};
  parallel_for(NP, 1, [&](size_t pb, size_t pe) {
    for (size_t p = pb; p < pe; ++p) {
      uint8_t* dst = out + p * panel_bytes;
      std::memset(dst, kInt8U7Offset, panel_bytes);  // padding: u = 64, B = 0
      for (size_t j = 0; j < kInt8NR; ++j) {
        size_t n = p * kInt8NR + j;
        if (n >= N) break;
        const int8_t* row = b + n * K;
        for (size_t k = 0; k < K; ++k) {
          int v = row[k];
          if (v < -kInt8U7Offset || v >= kInt8U7Offset) {
            ok = false;
            return;
          }
          dst[(k / 4) * 4 * kInt8NR + 4 * j + (k & 3)] = static_cast<uint8_t>(v + kInt8U7Offset);
        }
      }
    }
  });
  return ok;
}

void int8_matmul(const uint8_t* a, bool a_signed, size_t M, size_t K, int32_t za, const int8_t* b, size_t N,
                 int32_t zb, int32_t* out) {
  if (M == 0 || N == 0) return;
  if (K == 0) {
    std::memset(out, 0, M * N * sizeof(int32_t));
    return;
  }
  Epilogue ep;
  ep.N = N;
  ep.acc = out;
  if (a_signed && za == 0 && zb == 0) {  // the u7 layout, if b fits it
    AlignedVector<uint8_t> packed(int8_u7_packed_bytes(N, K));
    if (int8_pack_weights_u7(b, N, K, packed.data())) {
      gemm_u7(reinterpret_cast<const int8_t*>(a), M, K, packed.data(), ep);
      return;
    }
  }
  size_t Kp = int8_kpad(K);
  AlignedVector<int16_t> A(M * Kp);  // every buffer below is written in full before it is read
  std::vector<int32_t> rowsum(zb != 0 ? M : 0);
  AlignedVector<int8_t> packed(int8_packed_bytes(N, K));
  widen_rows(a, a_signed, M, K, za, A.data(), zb != 0 ? rowsum.data() : nullptr);
  int8_pack_weights(b, N, K, packed.data());
  ep.zb = zb;
  ep.rowsum = zb != 0 ? rowsum.data() : nullptr;
  gemm_i16(A.data(), M, K, packed.data(), ep);
}

void int8_linear(const float* x, size_t M, size_t K, const void* packed, bool u7, size_t N, const float* sb,
                 bool sb_per_channel, const float* bias, float* y, int32_t* acc, float* s_out) {
  if (M == 0) return;
  AlignedVector<int8_t> q(M * K);  // written in full by quantize_rows_s8
  std::vector<float> s(M), sa(M);
  quantize_rows_s8(x, M, K, q.data(), s.data());
  for (size_t m = 0; m < M; ++m) sa[m] = 1.0f / s[m];
  if (s_out) std::memcpy(s_out, s.data(), M * sizeof(float));
  if (N == 0) return;
  Epilogue ep;
  ep.N = N;
  ep.acc = acc;
  ep.y = y;
  ep.sa = sa.data();
  ep.sb = sb;
  ep.sb_per_channel = sb_per_channel;
  ep.bias = bias;
  if (u7) {
    gemm_u7(q.data(), M, K, static_cast<const uint8_t*>(packed), ep);
    return;
  }
  AlignedVector<int16_t> A(M * int8_kpad(K));
  widen_rows(reinterpret_cast<const uint8_t*>(q.data()), true, M, K, 0, A.data(), nullptr);
  gemm_i16(A.data(), M, K, static_cast<const int8_t*>(packed), ep);
}

}  // namespace lowbit
