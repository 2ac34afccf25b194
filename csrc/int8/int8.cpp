// int8 GEMM / linear driver: activation preparation, packing, blocking, threads, the
// zero-point corrections and the epilogue. Baseline code (no ISA flags); the inner
// products are the register tiles of the active Int8Kernels variant, which declare the
// layout they read (int8.h).
#include "int8/int8.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "act/act.h"
#include "core/common.h"
#include "core/parallel.h"

namespace lowbit {

LOWBIT_KERNEL_FAMILY_INSTANCE(int8);

namespace {

constexpr size_t kBlockChannels = 64;  // n-block: at least 64 channels (K * 64 bytes of weights, kept in L2)
constexpr size_t kRowsPerBlock = 96;   // m-block: rows of A swept over one n-block

size_t row_grain(size_t K) { return std::max<size_t>(1, (size_t{1} << 15) / std::max<size_t>(K, 1)); }

// Activations prepared for a layout: rows of Kg elements (int16 or int8), zero-padded,
// and their row sums (over K).
struct Prepared {
  AlignedVector<int16_t> i16;
  AlignedVector<int8_t> s8;
  const void* rows = nullptr;
  size_t lda = 0;
  std::vector<int32_t> rowsum;
};

// a (M, K) int8 (a_signed) or uint8 -> the layout's operand (int8.h):
//  kI16: a - za as int16; kS8: a (int8) or a - 128 (uint8). Row sums of what is stored.
// A kS8 copy is skipped when a is int8 and K is already a multiple of kgroup.
void prepare(const Int8Layout& l, Int8RowSumFn rowsum, const uint8_t* a, bool a_signed, size_t M, size_t K, int32_t za,
             Prepared& p) {
  const size_t Kg = int8_kgroups(l, K) * l.kgroup;
  p.rowsum.resize(M);
  p.lda = Kg;
  if (l.a == Int8Operand::kI16) {
    p.i16.resize(M * Kg);
    p.rows = p.i16.data();
    parallel_for(M, row_grain(K), [&](size_t b, size_t e) {
      for (size_t m = b; m < e; ++m) {
        const uint8_t* src = a + m * K;
        int16_t* dst = p.i16.data() + m * Kg;
        if (a_signed) {
          const int8_t* s8 = reinterpret_cast<const int8_t*>(src);
          for (size_t k = 0; k < K; ++k) dst[k] = static_cast<int16_t>(s8[k] - za);
        } else {
          for (size_t k = 0; k < K; ++k) dst[k] = static_cast<int16_t>(src[k] - za);
        }
        for (size_t k = K; k < Kg; ++k) dst[k] = 0;
        int32_t s = 0;
        for (size_t k = 0; k < K; ++k) s += dst[k];
        p.rowsum[m] = s;
      }
    });
    return;
  }
  const bool copy = !a_signed || Kg != K;
  if (copy) p.s8.resize(M * Kg);
  p.rows = copy ? static_cast<const void*>(p.s8.data()) : static_cast<const void*>(a);
  parallel_for(M, row_grain(K), [&](size_t b, size_t e) {
    for (size_t m = b; m < e; ++m) {
      const uint8_t* src = a + m * K;
      int32_t s = 0;
      if (copy) {
        int8_t* dst = p.s8.data() + m * Kg;
        if (a_signed) {
          std::memcpy(dst, src, K);
        } else {
          for (size_t k = 0; k < K; ++k) dst[k] = static_cast<int8_t>(src[k] ^ 0x80u);  // a - 128
        }
        std::memset(dst + K, 0, Kg - K);
        s = rowsum(dst, K);
      } else {
        s = rowsum(reinterpret_cast<const int8_t*>(src), K);
      }
      p.rowsum[m] = s;
    }
  });
}

// C = A x packed B, tile by tile, results handed to the epilogue. Work items are
// (n-block x m-block) pairs, channel-major, so a thread keeps its weight block in L2
// while it sweeps the rows; each m-block is cut into tiles of near-equal height <= mr.
void gemm(const Int8Tile& t, Int8EpilogueFn epilogue, const Prepared& p, size_t M, size_t K, const uint8_t* packed,
          const Int8Epilogue& ep) {
  const Int8Layout& l = t.layout;
  const size_t N = ep.N, nr = l.nr, mrmax = l.mr;
  const size_t kgroups = int8_kgroups(l, K), panel_bytes = nr * kgroups * l.kgroup;
  const size_t esize = l.a == Int8Operand::kI16 ? 2 : 1;
  const size_t panels_per_block = std::max<size_t>(1, kBlockChannels / nr);
  const size_t rows_per_block = std::max(mrmax, kRowsPerBlock / mrmax * mrmax);
  const size_t NP = int8_panels(l, N), NB = ceil_div(NP, panels_per_block), MB = ceil_div(M, rows_per_block);
  const uint8_t* A = static_cast<const uint8_t*>(p.rows);
  parallel_for(NB * MB, 1, [&](size_t tb, size_t te) {
    alignas(64) int32_t c[kInt8MaxMR * kInt8MaxNR];
    for (size_t w = tb; w < te; ++w) {
      size_t nb = w / MB, mb = w % MB;
      size_t p0 = nb * panels_per_block, p1 = std::min(NP, p0 + panels_per_block);
      size_t m0 = mb * rows_per_block, m1 = std::min(M, m0 + rows_per_block);
      size_t ntiles = ceil_div(m1 - m0, mrmax);
      size_t m = m0;
      for (size_t ti = 0; ti < ntiles; ++ti) {
        int mr = static_cast<int>(ceil_div(m1 - m, ntiles - ti));
        for (size_t pi = p0; pi < p1; ++pi) {
          t.fn(A + m * p.lda * esize, p.lda, mr, packed + pi * panel_bytes, kgroups, c);
          size_t n0 = pi * nr;
          epilogue(ep, c, nr, m, mr, n0, std::min(nr, N - n0));
        }
        m += mr;
      }
    }
  });
}

}  // namespace

const Int8Tile& int8_pick(const Int8Kernels& kernels, int lo, int hi) {
  const Int8Layout& n = kernels.narrow.layout;
  return lo >= n.wmin && hi <= n.wmax ? kernels.narrow : kernels.wide;
}

const Int8Tile* int8_find(const Int8Kernels& kernels, const std::string& name) {
  if (name == kernels.wide.layout.name) return &kernels.wide;
  if (name == kernels.narrow.layout.name) return &kernels.narrow;
  return nullptr;
}

const Int8Tile& int8_require(const Int8Kernels& kernels, const std::string& name) {
  if (const Int8Tile* t = int8_find(kernels, name)) return *t;
  std::string reads = std::string("'") + kernels.wide.layout.name + "'";
  if (std::string(kernels.narrow.layout.name) != kernels.wide.layout.name)
    reads += std::string(" or '") + kernels.narrow.layout.name + "'";
  throw std::invalid_argument("packed: weights packed for the int8 layout '" + name + "', but the active int8 variant (" +
                              isa_name(int8_family.active()) + ") reads " + reads +
                              ": repack the weight for it (lowbit.Linear does this itself)");
}

void int8_pack_weights(const Int8Layout& l, const int8_t* b, size_t N, size_t K, uint8_t* out) {
  const size_t kg = l.kgroup, nr = l.nr, kgroups = int8_kgroups(l, K), panel_bytes = nr * kgroups * kg;
  const uint8_t pad = static_cast<uint8_t>(l.woffset);
  parallel_for(int8_panels(l, N), 1, [&](size_t pb, size_t pe) {
    for (size_t p = pb; p < pe; ++p) {
      uint8_t* dst = out + p * panel_bytes;
      std::memset(dst, pad, panel_bytes);  // B = 0 for padding
      for (size_t j = 0; j < nr; ++j) {
        size_t n = p * nr + j;
        if (n >= N) break;
        const int8_t* row = b + n * K;
        for (size_t k = 0; k < K; ++k)
          dst[(k / kg) * kg * nr + j * kg + k % kg] = static_cast<uint8_t>(row[k] + l.woffset);
      }
    }
  });
}

void int8_matmul(const uint8_t* a, bool a_signed, size_t M, size_t K, int32_t za, const int8_t* b, size_t N,
                 int32_t zb, int32_t* out) {
  if (M == 0 || N == 0) return;
  if (K == 0) {
    std::memset(out, 0, M * N * sizeof(int32_t));
    return;
  }
  const Int8Kernels& kernels = int8_kernels();
  int lo = 127, hi = -128;
  for (size_t i = 0; i < N * K; ++i) lo = std::min<int>(lo, b[i]), hi = std::max<int>(hi, b[i]);
  const Int8Tile& t = int8_pick(kernels, lo, hi);
  const Int8Layout& l = t.layout;
  AlignedVector<uint8_t> packed(int8_packed_bytes(l, N, K));  // written in full by the packer
  int8_pack_weights(l, b, N, K, packed.data());
  Prepared p;
  prepare(l, kernels.rowsum, a, a_signed, M, K, za, p);
  Int8Epilogue ep;
  ep.N = N;
  ep.acc = out;
  ep.rowfactor = l.woffset + zb;
  ep.rowsum = p.rowsum.data();
  std::vector<int32_t> colcorr;
  const int32_t ca = l.a == Int8Operand::kS8 ? (a_signed ? 0 : 128) - za : 0;  // oa - za
  if (ca != 0) {  // + (oa - za) * (colsum(B)[n] - K * zb), wrapping
    colcorr.resize(N);
    const uint32_t kzb = static_cast<uint32_t>(K) * static_cast<uint32_t>(zb);
    for (size_t n = 0; n < N; ++n) {
      int32_t s = 0;
      for (size_t k = 0; k < K; ++k) s += b[n * K + k];
      colcorr[n] = static_cast<int32_t>(static_cast<uint32_t>(ca) * (static_cast<uint32_t>(s) - kzb));
    }
    ep.colcorr = colcorr.data();
  }
  gemm(t, kernels.epilogue, p, M, K, packed.data(), ep);
}

void int8_linear(const float* x, size_t M, size_t K, const uint8_t* packed, const std::string& layout, size_t N,
                 const float* sb, bool sb_per_channel, const float* bias, float* y, int32_t* acc, float* s_out) {
  const Int8Kernels& kernels = int8_kernels();
  const Int8Tile* t = &int8_require(kernels, layout);
  if (M == 0) return;
  AlignedVector<int8_t> q(M * K);  // written in full by quantize_rows_s8
  std::vector<float> s(M), sa(M);
  quantize_rows_s8(x, M, K, q.data(), s.data());
  for (size_t m = 0; m < M; ++m) sa[m] = 1.0f / s[m];
  if (s_out) std::memcpy(s_out, s.data(), M * sizeof(float));
  if (N == 0) return;
  Prepared p;
  prepare(t->layout, kernels.rowsum, reinterpret_cast<const uint8_t*>(q.data()), true, M, K, 0, p);
  Int8Epilogue ep;
  ep.N = N;
  ep.acc = acc;
  ep.y = y;
  ep.sa = sa.data();
  ep.sb = sb;
  ep.sb_per_channel = sb_per_channel;
  ep.bias = bias;
  ep.rowfactor = t->layout.woffset;
  ep.rowsum = p.rowsum.data();
  gemm(*t, kernels.epilogue, p, M, K, packed, ep);
}

}  // namespace lowbit
