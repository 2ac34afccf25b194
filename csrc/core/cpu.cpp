#include "core/cpu.h"

#include <cstring>

#if defined(LOWBIT_X86)
#include <cpuid.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif
#endif
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
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

// Linux gives a process the AMX tile data state only after it asks (arch_prctl
// ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA); a tile instruction before that is SIGILL.
bool request_amx_permission() {
#if defined(__linux__)
  constexpr long kArchReqXcompPerm = 0x1023, kArchGetXcompPerm = 0x1022;
  constexpr int kXfeatureXtiledata = 18;
  if (syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) != 0) return false;
  unsigned long long bitmask = 0;
  if (syscall(SYS_arch_prctl, kArchGetXcompPerm, &bitmask) != 0) return false;
  return (bitmask >> kXfeatureXtiledata) & 1;
#else
  return false;
#endif
}

void detect_x86(CpuFeatures& f) {
  unsigned r[4];
  cpuid(0, 0, r);
  const unsigned max_leaf = r[0];
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
    f.avx = r[2] & (1u << 28);
    if (r[2] & (1u << 27)) {  // OSXSAVE: XGETBV says which register state the OS saves
      const unsigned long long xcr0 = xgetbv0();
      f.os_avx = (xcr0 & 0x6) == 0x6;                     // XMM, YMM
      f.os_avx512 = f.os_avx && (xcr0 & 0xe0) == 0xe0;    // opmask, ZMM_Hi256, Hi16_ZMM
      f.os_amx = (xcr0 & 0x60000) == 0x60000;             // XTILECFG, XTILEDATA
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
    f.amx_tile = r[3] & (1u << 24);
    f.amx_int8 = r[3] & (1u << 25);
    cpuid(7, 1, r);
    f.avxvnni = r[0] & (1u << 4);
  }
  const bool avx2 = f.os_avx && f.avx && f.avx2 && f.fma && f.f16c && f.bmi2;
  const bool avx512 = avx2 && f.os_avx512 && f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq;
  if (avx2) f.bits |= kFeatAvx2;
  if (avx2 && f.avxvnni) f.bits |= kFeatAvxVnni;
  if (avx512) f.bits |= kFeatAvx512;
  if (avx512 && f.avx512vnni) f.bits |= kFeatAvx512Vnni;
  if (f.amx_tile && f.amx_int8 && f.os_amx) {
    f.amx_permitted = request_amx_permission();
    if (f.amx_permitted) f.bits |= kFeatAmxInt8;
  }
}
#endif

#if defined(__aarch64__)
void detect_arm(CpuFeatures& f) {
  f.vendor = "arm";
  f.neon = true;  // Advanced SIMD is part of every aarch64 CPU that runs Linux
#if defined(__linux__)
  constexpr unsigned long kHwcapAsimddp = 1ul << 20, kHwcap2I8mm = 1ul << 13;
  const unsigned long hw = getauxval(AT_HWCAP), hw2 = getauxval(AT_HWCAP2);
  f.dotprod = hw & kHwcapAsimddp;
  f.i8mm = hw2 & kHwcap2I8mm;
#endif
  f.bits |= kFeatNeon;
  if (f.dotprod) f.bits |= kFeatDotprod;
  if (f.dotprod && f.i8mm) f.bits |= kFeatI8mm;
}
#endif

CpuFeatures detect() {
  CpuFeatures f;
#if defined(LOWBIT_X86)
  detect_x86(f);
#elif defined(__aarch64__)
  detect_arm(f);
#endif
  return f;
}

struct IsaDesc {
  const char* name;
  uint32_t needs;
  const char* requires_text;
};

constexpr IsaDesc kIsas[kIsaCount] = {
    {"scalar", 0, "any CPU"},
    {"avx2", kFeatAvx2, "avx2+fma+f16c+bmi2"},
    {"avxvnni", kFeatAvx2 | kFeatAvxVnni, "avx2+fma+f16c+bmi2+avxvnni"},
    {"avx512", kFeatAvx2 | kFeatAvx512, "avx2+fma+f16c+bmi2+avx512f+bw+vl+dq"},
    {"avx512vnni", kFeatAvx2 | kFeatAvx512 | kFeatAvx512Vnni, "avx512f+bw+vl+dq+avx512vnni (+avx2)"},
    {"amx", kFeatAvx2 | kFeatAvx512 | kFeatAvx512Vnni | kFeatAmxInt8,
     "amx-tile+amx-int8, OS tile state and permission (+avx512vnni)"},
    {"neon", kFeatNeon, "neon"},
    {"dotprod", kFeatNeon | kFeatDotprod, "neon+dotprod"},
    {"i8mm", kFeatNeon | kFeatDotprod | kFeatI8mm, "neon+dotprod+i8mm"},
};

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = detect();  // first use, not static init of the library
  return f;
}

const char* isa_name(Isa isa) { return kIsas[static_cast<int>(isa)].name; }
uint32_t isa_needs(Isa isa) { return kIsas[static_cast<int>(isa)].needs; }
const char* isa_requires(Isa isa) { return kIsas[static_cast<int>(isa)].requires_text; }

bool isa_from_name(const std::string& name, Isa* out) {
  for (int i = 0; i < kIsaCount; ++i) {
    if (name == kIsas[i].name) {
      *out = static_cast<Isa>(i);
      return true;
    }
  }
  return false;
}

bool isa_for_this_arch(Isa isa) {
  switch (isa) {
    case Isa::scalar: return true;
    case Isa::avx2: case Isa::avxvnni: case Isa::avx512: case Isa::avx512vnni: case Isa::amx:
#if defined(LOWBIT_X86)
      return true;
#else
      return false;
#endif
    case Isa::neon: case Isa::dotprod: case Isa::i8mm:
#if defined(__aarch64__)
      return true;
#else
      return false;
#endif
  }
  return false;
}

bool isa_supported(Isa isa) {
  const uint32_t needs = isa_needs(isa);
  return isa_for_this_arch(isa) && (cpu_features().bits & needs) == needs;
}

Isa best_isa() {
  for (int i = kIsaCount - 1; i > 0; --i)
    if (isa_supported(static_cast<Isa>(i))) return static_cast<Isa>(i);
  return Isa::scalar;
}

}  // namespace lowbit
