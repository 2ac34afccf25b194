#include "ternary/ternary.h"
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>
namespace lowbit { extern const TernaryKernels ternary_neon, ternary_dotprod, ternary_i8mm; }
using namespace lowbit;
int main() {
  std::mt19937 g(7);
  const TernaryKernels* ks[3] = {&ternary_neon, &ternary_dotprod, &ternary_i8mm};
  const char* nm[3] = {"neon", "dotprod", "i8mm"};
  const TernaryKernels& S = ternary_scalar;
  int bad = 0;
  for (int trial = 0; trial < 200; ++trial) {
    int bits = g() % 2 ? 2 : 1;
    size_t KB = 32 * (8 / bits), nblocks = 1 + g() % 6, K = nblocks * KB;
    size_t ldw = nblocks * 32 + (g() % 2) * 32, nrows = 4 * (1 + g() % 3), ldx = K + (g() % 2) * 64;
    int M = 6;
    std::vector<uint8_t> w(nrows * ldw);
    for (auto& v : w) { v = 0; for (int p = 0; p < 8 / bits; ++p) v |= (bits == 2 ? g() % 3 : g() % 2) << (bits * p); }
    std::vector<int8_t> x(M * ldx);
    for (auto& v : x) v = (int)(g() % 256) - 128;
    for (int v = 0; v < 3; ++v) {
      const TernaryKernels& T = *ks[v];
      if (S.sum_s8(x.data(), K + 3) != T.sum_s8(x.data(), K + 3)) { printf("%s sum_s8\n", nm[v]); bad++; }
      std::vector<int32_t> a(nrows), b(nrows);
      S.reg_1x4(bits, x.data(), w.data(), ldw, nrows, nblocks, a.data());
      T.reg_1x4(bits, x.data(), w.data(), ldw, nrows, nblocks, b.data());
      if (a != b) { printf("%s reg_1x4 bits %d\n", nm[v], bits); bad++; }
      int mr = 1 + g() % 6;
      std::vector<int32_t> c(mr * nrows, 7), d(mr * nrows, 7);
      S.reg_rows(bits, x.data(), ldx, mr, w.data(), ldw, nrows, nblocks, c.data(), nrows);
      T.reg_rows(bits, x.data(), ldx, mr, w.data(), ldw, nrows, nblocks, d.data(), nrows);
      if (c != d) { printf("%s reg_rows bits %d mr %d\n", nm[v], bits, mr); bad++; }
      size_t chunk = S.dec_chunk;
      std::vector<uint8_t> wb1(nrows * chunk, 9), wb2(nrows * chunk, 9);
      size_t nb = std::min(nblocks, chunk / KB);
      S.decode(bits, w.data(), ldw, nrows, nb, wb1.data());
      T.decode(bits, w.data(), ldw, nrows, nb, wb2.data());
      if (wb1 != wb2) { printf("%s decode\n", nm[v]); bad++; }
      int dmr = 1 + g() % T.dec_max_rows;
      size_t nr = 1 + g() % nrows, len = nb * KB / 128 * 128;
      std::vector<int32_t> e(dmr * nrows, 5), f(dmr * nrows, 5);
      S.dec_tile(x.data(), ldx, dmr, wb1.data(), nr, len, e.data(), nrows);
      T.dec_tile(x.data(), ldx, dmr, wb1.data(), nr, len, f.data(), nrows);
      if (e != f) { printf("%s dec_tile mr %d nr %zu\n", nm[v], dmr, nr); bad++; }
      std::vector<float> gw(nrows), bias(nrows), y1(nrows), y2(nrows);
      for (auto& q : gw) q = (g() % 1000) / 37.0f;
      for (auto& q : bias) q = (g() % 1000) / 13.0f;
      float sx = 0.7f + (g() % 100) / 7.0f;
      for (int stride = 0; stride < 2; ++stride) {
        S.epilogue(a.data(), nrows, sx, gw.data(), stride, trial % 2 ? bias.data() : nullptr, y1.data());
        T.epilogue(a.data(), nrows, sx, gw.data(), stride, trial % 2 ? bias.data() : nullptr, y2.data());
        if (memcmp(y1.data(), y2.data(), nrows * 4)) { printf("%s epilogue\n", nm[v]); bad++; }
      }
    }
  }
  printf("bad=%d\n", bad);
  return bad != 0;
}
