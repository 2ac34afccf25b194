// CPU feature detection and the active instruction-set path.
//
// Kernel families keep one table of function pointers per ISA variant and ask
// `pick()` for the one to use. The active ISA is chosen on first use (never at
// static-initialization time): the best the CPU and OS support, or the one named
// by LOWBIT_FORCE_ISA. Tests switch it with set_active_isa().
#pragma once
#include <array>
#include <string>

namespace lowbit {

enum class Isa : int { scalar = 0, avx2 = 1, avx512 = 2, neon = 3 };
constexpr int kIsaCount = 4;

struct CpuFeatures {
  std::string vendor, brand;
  bool sse42 = false, avx = false, avx2 = false, fma = false, f16c = false, bmi2 = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false, avx512vnni = false;
  bool avxvnni = false, neon = false;
  bool os_avx = false, os_avx512 = false;  // XGETBV: the OS saves the wide registers
};

const CpuFeatures& cpu_features();
const char* isa_name(Isa isa);
bool isa_from_name(const std::string& name, Isa* out);
bool isa_supported(Isa isa);    // the CPU and OS can run it
bool isa_compiled(Isa isa);     // this build contains kernels for it
Isa best_isa();
Isa active_isa();               // resolves LOWBIT_FORCE_ISA on first call
void set_active_isa(Isa isa);   // throws std::invalid_argument if unsupported

// Pick a family's kernel table for the active ISA, falling back to the next
// lower ISA when a family has no variant for it. variants[0] (scalar) is never null.
template <class Table>
const Table& pick(const std::array<const Table*, kIsaCount>& variants) {
  int i = static_cast<int>(active_isa());
  if (i == static_cast<int>(Isa::neon)) return variants[i] ? *variants[i] : *variants[0];
  for (; i > 0; --i)
    if (variants[i]) return *variants[i];
  return *variants[0];
}

}  // namespace lowbit

#if defined(LOWBIT_X86)
#define LOWBIT_X86_ONLY(x) x
#else
#define LOWBIT_X86_ONLY(x) nullptr
#endif
#if defined(__aarch64__)
#define LOWBIT_ARM_ONLY(x) x
#else
#define LOWBIT_ARM_ONLY(x) nullptr
#endif
