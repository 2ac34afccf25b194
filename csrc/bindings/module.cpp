// The extension module: core entries (CPU info, ISA, threads) and every
// registered family.
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#if defined(LOWBIT_X86)
#include <xmmintrin.h>
#endif
#include <utility>
#include <vector>

#include "bindings/registry.h"
#include "core/buffers.h"
#include "core/common.h"
#include "core/cpu.h"
#include "core/dispatch.h"
#include "core/parallel.h"

namespace lowbit {
namespace {
Isa isa_by_name(const std::string& n) {
  Isa isa;
  if (!isa_from_name(n, &isa)) {
    std::string known;
    for (int i = 0; i < kIsaCount; ++i) known += std::string(i ? ", " : "") + isa_name(static_cast<Isa>(i));
    throw std::invalid_argument("unknown ISA '" + n + "' (known: " + known + ")");
  }
  return isa;
}

FamilyBase& family_by_name(const std::string& n) {
  if (FamilyBase* f = find_family(n)) return *f;
  std::string known;
  for (FamilyBase* f : kernel_families()) known += std::string(known.empty() ? "" : ", ") + f->name();
  throw std::invalid_argument("unknown kernel family '" + n + "' (known: " + known + ")");
}

std::vector<std::pair<const char*, BindFn>>& registry() {
  static std::vector<std::pair<const char*, BindFn>> r;
  return r;
}
}  // namespace

BindingRegistrar::BindingRegistrar(const char* name, BindFn fn) { registry().emplace_back(name, fn); }

}  // namespace lowbit

using namespace lowbit;

PYBIND11_MODULE(_C, m) {
  m.doc() = "lowbit native kernels (use the lowbit package, not this module)";

  static py::exception<NonFiniteError> nonfinite(m, "NonFiniteError", PyExc_ValueError);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const NonFiniteError& e) {
      py::set_error(nonfinite, e.what());
    }
  });

  m.def("cpu_features", [] {
    const CpuFeatures& f = cpu_features();
    py::dict d;
    d["vendor"] = f.vendor;
    d["brand"] = f.brand;
    py::dict flags;
#define LOWBIT_FLAG(x) flags[#x] = f.x;
    LOWBIT_FLAG(sse42) LOWBIT_FLAG(avx) LOWBIT_FLAG(avx2) LOWBIT_FLAG(fma) LOWBIT_FLAG(f16c)
    LOWBIT_FLAG(bmi2) LOWBIT_FLAG(avx512f) LOWBIT_FLAG(avx512bw) LOWBIT_FLAG(avx512vl)
    LOWBIT_FLAG(avx512dq) LOWBIT_FLAG(avx512vnni) LOWBIT_FLAG(avxvnni) LOWBIT_FLAG(amx_tile)
    LOWBIT_FLAG(amx_int8) LOWBIT_FLAG(neon) LOWBIT_FLAG(dotprod) LOWBIT_FLAG(i8mm)
    LOWBIT_FLAG(os_avx) LOWBIT_FLAG(os_avx512) LOWBIT_FLAG(os_amx) LOWBIT_FLAG(amx_permitted)
#undef LOWBIT_FLAG
    d["flags"] = flags;
    return d;
  });
  // ISAs: name -> (what it needs, built for this architecture, this CPU can run it).
  m.def("isas", [] {
    std::vector<std::tuple<std::string, std::string, bool, bool>> v;
    for (int i = 0; i < kIsaCount; ++i) {
      Isa isa = static_cast<Isa>(i);
      v.emplace_back(isa_name(isa), isa_requires(isa), isa_for_this_arch(isa), isa_supported(isa));
    }
    return v;
  });
  m.def("isa_within", [](const std::string& n, const std::string& cap) {
    return (isa_needs(isa_by_name(n)) & ~isa_needs(isa_by_name(cap))) == 0;
  });
  m.def("best_isa", [] { return std::string(isa_name(best_isa())); });
  m.def("isa_cap", [] {
    int cap = isa_cap();
    return cap < 0 ? py::object(py::none()) : py::object(py::str(isa_name(static_cast<Isa>(cap))));
  });
  m.def("set_isa_cap", [](const std::optional<std::string>& n) {
    set_isa_cap(n ? static_cast<int>(isa_by_name(*n)) : -1);
  });
  // Kernel families: name -> [compiled variants]; the variant in use; forcing one.
  m.def("families", [] {
    std::vector<std::pair<std::string, std::vector<std::string>>> out;
    for (FamilyBase* f : kernel_families()) {
      std::vector<std::string> names;
      for (Isa isa : f->compiled()) names.push_back(isa_name(isa));
      out.emplace_back(f->name(), names);
    }
    return out;
  });
  m.def("family_active", [](const std::string& fam) { return std::string(isa_name(family_by_name(fam).active())); });
  m.def("family_forced", [](const std::string& fam) {
    int v = family_by_name(fam).forced();
    return v < 0 ? py::object(py::none()) : py::object(py::str(isa_name(static_cast<Isa>(v))));
  });
  m.def("family_force", [](const std::string& fam, const std::optional<std::string>& n) {
    family_by_name(fam).force(n ? static_cast<int>(isa_by_name(*n)) : -1);
  });
  m.def("num_threads", &num_threads);
  m.def("default_num_threads", &default_num_threads);
  m.def("cpu_quota_limit", &cpu_quota_limit, py::arg("v2_cpu_max"), py::arg("v1_quota"), py::arg("v1_period"));
  m.def("set_num_threads", [](int n) {
    py::gil_scoped_release nogil;
    set_num_threads(n);
  });

  m.def("use_openmp_threads", [](const std::string& prefer) {
    py::gil_scoped_release nogil;  // waits for a call running on the runtime
    return use_openmp_threads(prefer);
  }, py::arg("prefer") = "");
  m.def("use_own_threads", [] {
    py::gil_scoped_release nogil;
    use_own_threads();
  });
  m.def("openmp_runtime", &openmp_runtime);

  // Threaded memcpy: the memory-bandwidth yardstick the benchmarks compare against.
  m.def("parallel_copy", [](py::buffer dst, py::buffer src) {
    py::buffer_info d = dst.request(true), s = src.request();
    size_t n = static_cast<size_t>(s.size * s.itemsize);
    if (static_cast<size_t>(d.size * d.itemsize) != n) throw std::invalid_argument("size mismatch");
    char* dp = static_cast<char*>(d.ptr);
    const char* sp = static_cast<const char*>(s.ptr);
    py::gil_scoped_release nogil;
    parallel_for(n, 1 << 20, [&](size_t b, size_t e) { std::memcpy(dp + b, sp + b, e - b); });
  });

#if defined(LOWBIT_X86)
  // Test hook: set this thread's MXCSR (returns the old value), to check that the
  // kernels do not depend on the caller's floating-point environment.
  m.def("_set_mxcsr", [](unsigned v) {
    unsigned old = _mm_getcsr();
    _mm_setcsr(v);
    return old;
  });
#endif

  m.def("buffers_release", &buffers_release);
  m.def("buffers_cached_bytes", &buffers_cached_bytes);

  for (auto& [name, fn] : registry()) {
    (void)name;
    fn(m);
  }
}
