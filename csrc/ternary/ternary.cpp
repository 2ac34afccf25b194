// Driver of the ternary family: packing into the kernel layout, the matmul
// strategy around the ISA's tiles (ternary.h: which tiles for which M, K chunking,
// scratch) and threads split by output channel. Activations are quantized per token
// by the act family (csrc/act/act.h).
#include "ternary/ternary.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <vector>

#include "act/act.h"
#include "core/common.h"
#include "core/parallel.h"

namespace lowbit {

LOWBIT_KERNEL_FAMILY_INSTANCE(ternary);


namespace {

constexpr size_t kRowUnit = 8;   // output channels per parallel work item
constexpr size_t kNBlock = 64;   // output channels per int32 staging block (float path)

// Register tiles (small M): an MR x 1 tile reads its MR activation rows once per weight
// row, so they must stay in L1 beside the streaming weights: rows longer than this are
// cut into chunks of K of at most kRegActBytes (all MR rows together), each chunk
// passing over every weight row of the work item.
constexpr size_t kRegActBytes = 24 << 10;
// Decoded panels (large M): the ISA's dec_rows weight rows are decoded per panel (one
// dec_chunk of K each), then swept by every activation row, which streams from L2/L3
// once per panel: 16 rows (32 KiB at dec_chunk = 2048) halve that traffic against 8
// (docs/ternary.md).
// Sums one reg_rows call may return: strips of kRegSums / MR weight rows per call.
constexpr size_t kRegSums = 1024;

// Work items of kRowUnit output rows; at least ~2^18 multiply-adds per chunk.
size_t row_grain(size_t M, size_t K) {
  size_t per_item = std::max<size_t>(1, M * K * kRowUnit);
  return std::max<size_t>(1, (size_t(1) << 18) / per_item);
}

// The family's formula on tile sums U (ternary.h), in wrapping int32 arithmetic:
// a[j] = U[j] - qsum (ternary) or 2 U[j] - qsum (binary), j < n (a may be U).
inline void finish(int bits, const int32_t* U, size_t n, int32_t qsum, int32_t* a) {
  const unsigned sh = bits == 2 ? 0 : 1;
  const uint32_t qs = static_cast<uint32_t>(qsum);
  for (size_t j = 0; j < n; ++j) a[j] = static_cast<int32_t>((static_cast<uint32_t>(U[j]) << sh) - qs);
}
inline int32_t from_u(int bits, int32_t U) {
  const uint32_t u = static_cast<uint32_t>(U);
  return static_cast<int32_t>(bits == 2 ? u : u + u);
}
inline int32_t wrap_add(int32_t a, int32_t b) {
  return static_cast<int32_t>(static_cast<uint32_t>(a) + static_cast<uint32_t>(b));
}

inline size_t round_up(size_t a, size_t b) { return (a + b - 1) / b * b; }

// K: the padded row length (a whole number of blocks).
bool use_decoded(const TernaryKernels& k, size_t M, size_t K) {
  size_t from = k.dec_min_rows;
  if (k.dec_k_per_row) from = std::min(from, k.dec_min_rows_base + K / k.dec_k_per_row);
  return M >= from;
}

// Fused path (dec_out, K in one chunk): decoded panels are kept together up to this many
// bytes (a "group"), and swept by blocks of activation rows of about kFusedActBytes, so that
// both stay in L2 while every panel of the group meets every row of the block (rather than
// all M rows streaming from L3 once per panel when M K outgrows L2: 608 x 1536 is 912 KiB).
constexpr size_t kFusedPanelBytes = 192 << 10;
constexpr size_t kFusedActBytes = 256 << 10;

// Bytes of per-task scratch the tiles need for M activation rows (64-byte aligned).
size_t tiles_scratch_bytes(const TernaryKernels& k, size_t M, size_t K) {
  if (!use_decoded(k, M, K)) return 0;
  return k.dec_rows * k.dec_chunk + round_up(M * k.dec_rows * k.dec_acc_bytes, 64);
}

// The fused path (dec_out) takes K in one chunk.
bool use_fused(const TernaryKernels& k, size_t M, size_t K) {
  return k.dec_out && use_decoded(k, M, K) && K <= k.dec_chunk;
}

struct Gemm {
  const TernaryKernels& k;
  int bits;
  const int8_t* q;  // (M, ldq) int8, rows zero-padded to nblocks blocks
  size_t M, ldq;
  const int32_t* qsum;
  const uint8_t* w;  // packed rows, ldw apart
  size_t ldw, nblocks;

  // acc[m * ldc + (n - n0)] for m < M, n0 <= n < n1; scratch: tiles_scratch_bytes(k, M, ldq).
  void run(size_t n0, size_t n1, int32_t* acc, size_t ldc, void* scratch) const {
    if (use_decoded(k, M, ldq)) return decoded(n0, n1, acc, ldc, static_cast<unsigned char*>(scratch));
    // register tiles of near-equal height <= reg_max_rows
    const size_t R = static_cast<size_t>(k.reg_max_rows), ntiles = (M + R - 1) / R;
    for (size_t t = 0, m = 0; t < ntiles; ++t) {
      const size_t mr = (M - m + (ntiles - t) - 1) / (ntiles - t);
      registers(m, mr, n0, n1, acc + m * ldc, ldc);
      m += mr;
    }
  }

  // Rows [m, m + mr) by channels [n0, n1): the 1 x 4 tile for one row (MR x 1 for the
  // last n1 - n0 mod 4 channels), the MR x 1 tile over K chunks otherwise.
  void registers(size_t m, size_t mr, size_t n0, size_t n1, int32_t* acc, size_t ldc) const {
    const size_t KB = tl_block(bits);
    const int8_t* x = q + m * ldq;
    if (mr == 1) {  // sums straight into acc, then the formula in place
      const size_t n4 = (n1 - n0) / 4 * 4;
      if (n4) k.reg_1x4(bits, x, w + n0 * ldw, ldw, n4, nblocks, acc);
      if (n1 - n0 > n4) k.reg_rows(bits, x, ldq, 1, w + (n0 + n4) * ldw, ldw, n1 - n0 - n4, nblocks, acc + n4, 0);
      finish(bits, acc, n1 - n0, qsum[m], acc);
      return;
    }
    // Equal chunks of whole reg_k_blocks; weight rows in strips of as many as U holds.
    const size_t align = std::max<size_t>(1, k.reg_k_blocks);
    const size_t nchunks = (mr * nblocks * KB + kRegActBytes - 1) / kRegActBytes;
    const size_t cb = ((nblocks + nchunks - 1) / nchunks + align - 1) / align * align;
    int32_t U[kRegSums];
    const size_t strip = kRegSums / mr;  // reg_max_rows <= 64 (ternary.h)
    for (size_t c0 = 0; c0 < nblocks; c0 += cb) {
      const size_t len = std::min(cb, nblocks - c0);
      for (size_t s0 = n0; s0 < n1; s0 += strip) {
        const size_t ns = std::min(strip, n1 - s0);
        k.reg_rows(bits, x + c0 * KB, ldq, static_cast<int>(mr), w + s0 * ldw + c0 * 32, ldw, ns, len, U, ns);
        for (size_t i = 0; i < mr; ++i) {
          int32_t* a = acc + i * ldc + (s0 - n0);
          const int32_t* u = U + i * ns;
          if (c0 == 0)
            finish(bits, u, ns, qsum[m + i], a);
          else
            for (size_t j = 0; j < ns; ++j) a[j] = wrap_add(a[j], from_u(bits, u[j]));
        }
      }
    }
  }

  // Panels of dec_rows weight rows by dec_chunk values of K decoded into scratch, then
  // swept by tiles of activation rows; accumulators [M][dec_rows] after the panel.
  // (dec_rows 16 and 32 get compile-time copies: reading it at run time cost 1-2 % of
  // the time at M = 14-20 on AVX2.)
  //
  // With `out` (the variant has dec_out): the last chunk of K goes to dec_out, which
  // writes the finished results of channels [n0, n1) straight into `out`'s arrays (acc and
  // ldc unused); earlier chunks, if K has more than one, accumulate as above.
  void decoded(size_t n0, size_t n1, int32_t* acc, size_t ldc, unsigned char* scratch,
               const TernaryOut* out = nullptr) const {
    if (k.dec_rows == 16) return decoded_p<16>(n0, n1, acc, ldc, scratch, out);
    if (k.dec_rows == 32) return decoded_p<32>(n0, n1, acc, ldc, scratch, out);
    decoded_p<0>(n0, n1, acc, ldc, scratch, out);
  }
  template <size_t kP>  // k.dec_rows, or 0: read it
  void decoded_p(size_t n0, size_t n1, int32_t* acc, size_t ldc, unsigned char* scratch,
                 const TernaryOut* out) const {
    const size_t KB = tl_block(bits), CB = k.dec_chunk / KB, ab = k.dec_acc_bytes;
    uint8_t* wb = scratch;
    const size_t P = kP ? kP : k.dec_rows;
    unsigned char* vacc = scratch + P * k.dec_chunk;
    const bool chunked = nblocks > CB;  // more than one chunk of K: accumulators in memory
    for (size_t nb = n0; nb < n1; nb += P) {
      const size_t rows = std::min(P, n1 - nb);
      if (!out || chunked) std::memset(vacc, 0, M * P * ab);
      for (size_t c0 = 0; c0 < nblocks; c0 += CB) {
        const size_t c1 = std::min(nblocks, c0 + CB), k0 = c0 * KB, len = (c1 - c0) * KB;
        k.decode(bits, w + nb * ldw + c0 * 32, ldw, rows, c1 - c0, wb);
        const bool last = out && c1 == nblocks;
        auto panel = [&](size_t m, size_t mr) {
          if (last)
            k.dec_out(q + m * ldq + k0, ldq, static_cast<int>(mr), wb, rows, len, chunked ? vacc + m * P * ab : nullptr,
                      P, *out, m, nb);
          else
            k.dec_tile(q + m * ldq + k0, ldq, static_cast<int>(mr), wb, rows, len, vacc + m * P * ab, P);
        };
        row_tiles(0, M, panel);
      }
      if (out) continue;
      for (size_t m = 0; m < M; ++m) {
        int32_t* out = acc + m * ldc + (nb - n0);
        k.dec_reduce(vacc + m * P * ab, rows, out);
        finish(bits, out, rows, qsum[m], out);
      }
    }
  }

  // Rows [m0, m1) as tiles of dec_max_rows = R rows, tile(m, mr); when R + 2 or R + 3 rows
  // would be left, two near-equal tiles (4 + 4, 4 + 5 for R = 6) instead of R and a sliver.
  template <class Tile>
  void row_tiles(size_t m0, size_t m1, const Tile& tile) const {
    const size_t R = static_cast<size_t>(k.dec_max_rows);
    size_t m = m0;
    for (; m1 - m >= R && !(R >= 4 && (m1 - m == R + 2 || m1 - m == R + 3)); m += R) tile(m, R);
    if (m1 - m > R) tile(m, (m1 - m) / 2), m += (m1 - m) / 2;
    if (m1 > m) tile(m, m1 - m);
  }

  // ---- the fused path with K in one chunk (dec_out; run_fused plans it) ----
  // Work item it = (group it / nblk, row block it % nblk): the group's panels decoded back
  // to back into wb (a variant with dec_out decodes nblocks blocks of P rows into
  // P * nblocks * KB bytes), unless wb holds that group already (*have: the group in wb,
  // per task), then every panel of the group against the rows of the block, tile by
  // tile, the results written by dec_out.
  struct FusedPlan {
    size_t P, pbytes, gpanels, ngroups, rows, nblk;  // rows: per block, whole tiles
  };
  void fused_item(const FusedPlan& f, size_t N, size_t it, unsigned char* wb, size_t* have,
                  const TernaryOut& out) const {
    const size_t grp = it / f.nblk, blk = it % f.nblk, len = nblocks * tl_block(bits);
    const size_t g0 = grp * f.gpanels * f.P, g1 = std::min(N, g0 + f.gpanels * f.P);
    if (*have != grp) {
      for (size_t nb = g0, i = 0; nb < g1; nb += f.P, ++i)
        k.decode(bits, w + nb * ldw, ldw, std::min(f.P, g1 - nb), nblocks, wb + i * f.pbytes);
      *have = grp;
    }
    const size_t m0 = blk * f.rows, m1 = std::min(M, m0 + f.rows);
    for (size_t nb = g0, i = 0; nb < g1; nb += f.P, ++i) {
      const size_t rows = std::min(f.P, g1 - nb);
      row_tiles(m0, m1, [&](size_t m, size_t mr) {
        k.dec_out(q + m * ldq, ldq, static_cast<int>(mr), wb + i * f.pbytes, rows, len, nullptr, f.P, out, m, nb);
      });
    }
  }
};

// Groups of panels of at most kFusedPanelBytes and row blocks of about kFusedActBytes (both
// stay in L2 while every panel of the group meets every row of the block), made smaller
// while there are fewer than 4 work items per thread: first fewer panels per group, then
// shorter row blocks (a task decodes a group once per run of its items; every task that
// takes a block of the group decodes it again: ~1 % of the work per decode). Runs dec_out
// over all of (M, N) on the pool, items group by group.
void run_fused(const Gemm& g, size_t N, const TernaryOut& out) {
  const TernaryKernels& k = g.k;
  Gemm::FusedPlan f;
  f.P = k.dec_rows;
  f.pbytes = round_up(f.P * g.ldq, 64);
  const size_t npanels = ceil_div(N, f.P), R = static_cast<size_t>(k.dec_max_rows);
  const size_t want = num_threads() > 1 ? 4 * static_cast<size_t>(num_threads()) : 1;
  const size_t rows0 = std::max(R, kFusedActBytes / g.ldq / R * R);
  size_t nblk = std::max<size_t>(1, (g.M + rows0 / 2) / rows0);
  f.gpanels = std::max<size_t>(1, std::min(npanels, kFusedPanelBytes / f.pbytes));
  if (ceil_div(npanels, f.gpanels) * nblk < want)
    f.gpanels = std::max<size_t>(1, std::min(f.gpanels, npanels * nblk / want));
  f.ngroups = ceil_div(npanels, f.gpanels);
  if (f.ngroups * nblk < want) nblk = std::min(ceil_div(want, f.ngroups), ceil_div(g.M, R));
  f.rows = ceil_div(ceil_div(g.M, nblk), R) * R;  // near-equal blocks of whole tiles
  f.nblk = ceil_div(g.M, f.rows);
  ThreadScratch scratch(f.gpanels * f.pbytes);
  std::vector<size_t> have(static_cast<size_t>(scratch.slots()), SIZE_MAX);
  parallel_for(
      f.ngroups * f.nblk, 1,
      TaskFn([&](size_t b, size_t e, int tid) {
        auto* wb = static_cast<unsigned char*>(scratch.get(tid));
        for (size_t it = b; it < e; ++it) g.fused_item(f, N, it, wb, &have[static_cast<size_t>(tid)], out);
      }),
      scratch.slots());
}

// A variant with dec_out on the decoded path: results straight from the tiles, K in one
// chunk (run_fused) or in several (whole panels per work item).
void run_dec_out(const Gemm& g, size_t N, const TernaryOut& out) {
  const TernaryKernels& k = g.k;
  if (use_fused(k, g.M, g.ldq)) return run_fused(g, N, out);
  ThreadScratch scratch(tiles_scratch_bytes(k, g.M, g.ldq));
  parallel_for(ceil_div(N, k.dec_rows), 1, scratch, [&](size_t b, size_t e, void* s) {
    g.decoded(b * k.dec_rows, std::min(N, e * k.dec_rows), nullptr, 0, static_cast<unsigned char*>(s), &out);
  });
}

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
  const Gemm g{kern, bits, q, M, ldq, qsum.data(), packed, ldw, nblocks};
  if (use_decoded(kern, M, ldq) && kern.dec_out)
    return run_dec_out(g, N, TernaryOut{bits, qsum.data(), acc, nullptr, N, nullptr, nullptr, 0, nullptr, nullptr});
  ThreadScratch scratch(tiles_scratch_bytes(kern, M, ldq));
  parallel_for(ceil_div(N, kRowUnit), row_grain(M, K), scratch, [&](size_t b, size_t e, void* s) {
    const size_t n0 = b * kRowUnit, n1 = std::min(N, e * kRowUnit);
    g.run(n0, n1, acc + n0, N, s);
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
  quantize_rows_s8(x, M, K, q.data(), sx.data(), std::max<size_t>(ldq, 1));  // SPEC 5, the act family
  // padding and row sums: M K bytes, a few microseconds per 64 KiB, so threads from 128 KiB
  parallel_for(M, std::max<size_t>(1, (size_t(128) << 10) / std::max<size_t>(ldq, 1)), [&](size_t b, size_t e) {
    for (size_t m = b; m < e; ++m) {
      int8_t* qm = q.data() + m * ldq;
      std::memset(qm + K, 0, ldq - K);
      qsum[m] = kern.sum_s8(qm, K);
    }
  });
  const Gemm g{kern, bits, q.data(), M, ldq, qsum.data(), packed, ldw, nblocks};
  if (nblocks && use_decoded(kern, M, ldq) && kern.dec_out) {  // results straight from the tiles' registers
    std::vector<float> rowf(gw_stride ? 0 : M);
    for (size_t m = 0; m < rowf.size(); ++m) rowf[m] = gw[0] / sx[m];  // tl_out_one's factor
    return run_dec_out(g, N, TernaryOut{bits, qsum.data(), nullptr, y, N, sx.data(), gw, gw_stride, bias, rowf.data()});
  }
  // per task: the int32 staging block, then the tiles' scratch
  const size_t stage_bytes = round_up(M * kNBlock * sizeof(int32_t), 64);
  ThreadScratch scratch(stage_bytes + tiles_scratch_bytes(kern, M, ldq));
  parallel_for(ceil_div(N, kRowUnit), row_grain(M, K), scratch, [&](size_t b, size_t e, void* s) {
    const size_t n0 = b * kRowUnit, n1 = std::min(N, e * kRowUnit);
    int32_t* stage = static_cast<int32_t*>(s);
    void* tiles = static_cast<unsigned char*>(s) + stage_bytes;
    for (size_t nb = n0; nb < n1; nb += kNBlock) {
      const size_t ne = std::min(n1, nb + kNBlock), w = ne - nb;
      if (nblocks) g.run(nb, ne, stage, kNBlock, tiles);
      else std::fill(stage, stage + M * kNBlock, 0);
      for (size_t m = 0; m < M; ++m)
        kern.epilogue(stage + m * kNBlock, w, sx[m], gw + nb * gw_stride, gw_stride, bias ? bias + nb : nullptr,
                      y + m * N + nb);
    }
  });
}

}  // namespace lowbit
