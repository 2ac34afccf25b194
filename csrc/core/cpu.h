// CPU features and the instruction-set variants a kernel can be built for.
//
// A variant is named by what it needs, not by a place on a ladder: `avx512vnni`
// needs AVX-512 F/BW/VL/DQ and VNNI (and AVX2), `dotprod` needs NEON and the
// dot-product instructions. A variant's source file is `<family>_<isa>.cpp`; CMake
// compiles it with that ISA's flags (the table in CMakeLists.txt), x86 variants
// only for x86-64 and ARM variants only for aarch64. Each kernel family picks its
// own best variant (core/dispatch.h). Detection runs on first use, never at
// static-initialization time, and executes no instruction the CPU may lack.
#pragma once
#include <cstdint>
#include <string>

namespace lowbit {

// Preference order within an architecture: a later ISA is preferred when the CPU has
// it and the family has a variant for it.
enum class Isa : int { scalar, avx2, avxvnni, avx512, avx512vnni, amx, neon, dotprod, i8mm };
constexpr int kIsaCount = 9;

// Feature bits. Each stands for a group that kernels use together, checked with the OS
// support it needs (XCR0 state for AVX and AVX-512 registers and AMX tiles, the Linux
// AMX permission request).
enum Feature : uint32_t {
  kFeatAvx2 = 1u << 0,        // AVX2, FMA, F16C, BMI2 (+ OS YMM state)
  kFeatAvxVnni = 1u << 1,     // AVX-VNNI (VEX-encoded vpdpbusd on 256-bit vectors)
  kFeatAvx512 = 1u << 2,      // AVX-512 F, BW, VL, DQ (+ OS ZMM and opmask state)
  kFeatAvx512Vnni = 1u << 3,  // AVX-512 VNNI
  kFeatAmxInt8 = 1u << 4,     // AMX-TILE + AMX-INT8, OS tile state, permission granted
  kFeatNeon = 1u << 5,        // Advanced SIMD (every aarch64 CPU)
  kFeatDotprod = 1u << 6,     // SDOT/UDOT (HWCAP_ASIMDDP)
  kFeatI8mm = 1u << 7,        // SMMLA/UMMLA/USMMLA (HWCAP2_I8MM)
};

struct CpuFeatures {
  std::string vendor, brand;
  uint32_t bits = 0;  // Feature bits the CPU and OS support
  // Raw flags, for cpu_info().
  bool sse42 = false, avx = false, avx2 = false, fma = false, f16c = false, bmi2 = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false, avx512vnni = false;
  bool avxvnni = false, amx_tile = false, amx_int8 = false;
  bool neon = false, dotprod = false, i8mm = false;
  bool os_avx = false, os_avx512 = false, os_amx = false, amx_permitted = false;
};

const CpuFeatures& cpu_features();

const char* isa_name(Isa isa);
bool isa_from_name(const std::string& name, Isa* out);
uint32_t isa_needs(Isa isa);          // Feature bits a variant for this ISA may use
const char* isa_requires(Isa isa);    // the same, for people: "avx2+fma+f16c+bmi2"
bool isa_for_this_arch(Isa isa);      // this build compiles variants for it
bool isa_supported(Isa isa);          // for this arch, and the CPU and OS can run it
Isa best_isa();                       // the most preferred supported ISA

}  // namespace lowbit

// LOWBIT_IF_BUILT_<isa>(x): x where variants for <isa> are compiled (this architecture),
// nullptr elsewhere, so a family's list of variants can name them all.
#define LOWBIT_IF_BUILT_scalar(x) x
#if defined(LOWBIT_X86)
#define LOWBIT_IF_BUILT_avx2(x) x
#define LOWBIT_IF_BUILT_avxvnni(x) x
#define LOWBIT_IF_BUILT_avx512(x) x
#define LOWBIT_IF_BUILT_avx512vnni(x) x
#define LOWBIT_IF_BUILT_amx(x) x
#else
#define LOWBIT_IF_BUILT_avx2(x) nullptr
#define LOWBIT_IF_BUILT_avxvnni(x) nullptr
#define LOWBIT_IF_BUILT_avx512(x) nullptr
#define LOWBIT_IF_BUILT_avx512vnni(x) nullptr
#define LOWBIT_IF_BUILT_amx(x) nullptr
#endif
#if defined(__aarch64__)
#define LOWBIT_IF_BUILT_neon(x) x
#define LOWBIT_IF_BUILT_dotprod(x) x
#define LOWBIT_IF_BUILT_i8mm(x) x
#else
#define LOWBIT_IF_BUILT_neon(x) nullptr
#define LOWBIT_IF_BUILT_dotprod(x) nullptr
#define LOWBIT_IF_BUILT_i8mm(x) nullptr
#endif
