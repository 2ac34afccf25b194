#include "core/cpu.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>

#if defined(LOWBIT_X86)
#include <cpuid.h>
#endif

namespace lowbit {
namespace {

#if defined(LOWBIT_X86)
void cpuid(unsigned leaf, unsigned sub, unsigned r[4]) { __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]); }
unsigned long long xgetbv0() {
  unsigned eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<unsigned long long>(edx) << 32) | eax;
}
#endif

CpuFeatures detect() {
  CpuFeatures f;
#if defined(LOWBIT_X86)
  unsigned r[4];
  cpuid(0, 0, r);
  unsigned max_leaf = r[0];
  char vendor[13] = {};
  std::memcpy(vendor, &r[1], 4);
  std::memcpy(vendor + 4, &r[3], 4);
  std::memcpy(vendor + 8, &r[2], 4);
  f.vendor = vendor;
  cpuid(0x80000000u, 0, r);
  if (r[0] >= 0x80000004u) {
    char brand[49] = {};
    for (unsigned i = 0; i < 3; ++i) {
      cpuid(0x80000002u + i, 0, r);
      std::memcpy(brand + 16 * i, r, 16);
    }
    f.brand = brand;
    while (!f.brand.empty() && f.brand.back() == ' ') f.brand.pop_back();
    size_t s = f.brand.find_first_not_of(' ');
    f.brand = s == std::string::npos ? "" : f.brand.substr(s);
  }
  if (max_leaf >= 1) {
    cpuid(1, 0, r);
    f.sse42 = r[2] & (1u << 20);
    f.fma = r[2] & (1u << 12);
    f.f16c = r[2] & (1u << 29);
    bool osxsave = r[2] & (1u << 27);
    f.avx = r[2] & (1u << 28);
    if (osxsave) {
      unsigned long long xcr0 = xgetbv0();
      f.os_avx = (xcr0 & 0x6) == 0x6;                 // XMM and YMM state
      f.os_avx512 = f.os_avx && (xcr0 & 0xe0) == 0xe0;  // opmask, ZMM_Hi256, Hi16_ZMM
    }
  }
  if (max_leaf >= 7) {
    cpuid(7, 0, r);
    f.avx2 = r[1] & (1u << 5);
    f.bmi2 = r[1] & (1u << 8);
    f.avx512f = r[1] & (1u << 16);
    f.avx512dq = r[1] & (1u << 17);
    f.avx512bw = r[1] & (1u << 30);
    f.avx512vl = r[1] & (1u << 31);
    f.avx512vnni = r[2] & (1u << 11);
    cpuid(7, 1, r);
    f.avxvnni = r[0] & (1u << 4);
  }
#elif defined(__aarch64__)
  f.vendor = "arm";
  f.neon = true;
#endif
  return f;
}

std::atomic<int> g_active{-1};
std::mutex g_init_mutex;

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = detect();  // first use, not static init of the library
  return f;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::scalar: return "scalar";
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
    case Isa::neon: return "neon";
  }
  return "?";
}

bool isa_from_name(const std::string& name, Isa* out) {
  for (int i = 0; i < kIsaCount; ++i) {
    if (name == isa_name(static_cast<Isa>(i))) {
      *out = static_cast<Isa>(i);
      return true;
    }
  }
  return false;
}

bool isa_compiled(Isa isa) {
  switch (isa) {
    case Isa::scalar: return true;
#if defined(LOWBIT_X86)
    case Isa::avx2: return true;
#endif
    default: return false;  // avx512 and neon: dispatch is ready, no kernels ship yet
  }
}

bool isa_supported(Isa isa) {
  const CpuFeatures& f = cpu_features();
  switch (isa) {
    case Isa::scalar: return true;
    case Isa::avx2: return f.os_avx && f.avx && f.avx2 && f.fma && f.f16c && f.bmi2;
    case Isa::avx512:
      return f.os_avx512 && f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq &&
             isa_supported(Isa::avx2);
    case Isa::neon: return f.neon;
  }
  return false;
}

Isa best_isa() {
  for (int i = kIsaCount - 1; i > 0; --i) {
    Isa isa = static_cast<Isa>(i);
    if (isa_compiled(isa) && isa_supported(isa)) return isa;
  }
  return Isa::scalar;
}

Isa active_isa() {
  int v = g_active.load(std::memory_order_acquire);
  if (v >= 0) return static_cast<Isa>(v);
  std::lock_guard<std::mutex> lock(g_init_mutex);
  v = g_active.load(std::memory_order_relaxed);
  if (v >= 0) return static_cast<Isa>(v);
  Isa isa = best_isa();
  const char* env = std::getenv("LOWBIT_FORCE_ISA");
  if (env && *env) {
    Isa forced;
    if (!isa_from_name(env, &forced))
      throw std::invalid_argument(std::string("LOWBIT_FORCE_ISA=") + env +
                                  ": unknown ISA (expected scalar, avx2, avx512 or neon)");
    if (!isa_compiled(forced) || !isa_supported(forced))
      throw std::invalid_argument(std::string("LOWBIT_FORCE_ISA=") + env +
                                  ": this CPU or this build cannot run that path");
    isa = forced;
  }
  g_active.store(static_cast<int>(isa), std::memory_order_release);
  return isa;
}

void set_active_isa(Isa isa) {
  if (!isa_compiled(isa))
    throw std::invalid_argument(std::string("ISA '") + isa_name(isa) + "' is not compiled into this build");
  if (!isa_supported(isa))
    throw std::invalid_argument(std::string("ISA '") + isa_name(isa) + "' is not supported by this CPU");
  g_active.store(static_cast<int>(isa), std::memory_order_release);
}

}  // namespace lowbit
