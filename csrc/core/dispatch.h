// Kernel families and their variants: each family picks its own best variant.
//
// A family is a table of function pointers (AffineKernels, Int8Kernels, ...) with
// one definition per ISA variant, each in its own file `<family>_<isa>.cpp`. The
// family header names its variants in one line,
//
//   LOWBIT_KERNEL_FAMILY(affine, AffineKernels, scalar, avx2, neon);
//
// which declares the tables (affine_scalar, affine_avx2, affine_neon), the family
// object and the accessor `affine_kernels()`; the family's driver defines the object
// with `LOWBIT_KERNEL_FAMILY_INSTANCE(affine);`. Adding a variant is one new file and
// one word in that list: the tests, cpu_info() and the forcing switches find it.
//
// Choice, on first use of a family (never at static initialization):
//  - a variant forced for this family (set_kernel, LOWBIT_FORCE_KERNELS="int8=avx2,
//    ternary=scalar"), which must be compiled and runnable here, else an error;
//  - otherwise the most preferred variant (core/cpu.h, Isa order) that the CPU and OS
//    support and that needs no feature beyond the ISA cap (set_isa_cap,
//    LOWBIT_FORCE_ISA=avx2: every family at that ISA or below).
// Errors (unknown names, a variant this CPU cannot run) are std::invalid_argument,
// raised to Python as ValueError; a kernel the CPU cannot run is never selected.
#pragma once
#include <atomic>
#include <string>
#include <vector>

#include "core/cpu.h"

namespace lowbit {

struct VariantEntry {
  Isa isa;
  const void* table;  // null: not built for this architecture
};

class FamilyBase {
 public:
  FamilyBase(const char* name, std::vector<VariantEntry> variants);
  FamilyBase(const FamilyBase&) = delete;
  FamilyBase& operator=(const FamilyBase&) = delete;

  const char* name() const { return name_; }
  std::vector<Isa> compiled() const;            // variants built into this module
  bool has(Isa isa) const;
  Isa active();                                 // resolves on first use
  int forced() const;                           // forced variant, or -1
  // Forces a variant (or lifts it with -1); throws std::invalid_argument if the family
  // has no such variant or this CPU cannot run it.
  void force(int isa);

 protected:
  const void* table() {
    const void* t = current_.load(std::memory_order_acquire);
    return t ? t : resolve();
  }

 private:
  friend void reset_all_families();
  const void* resolve();
  const char* name_;
  std::vector<VariantEntry> variants_;
  std::atomic<const void*> current_{nullptr};
  std::atomic<int> current_isa_{-1};
  int forced_ = -1;
  bool env_read_ = false;
};

template <class Table>
class KernelFamily : public FamilyBase {
 public:
  using FamilyBase::FamilyBase;
  const Table& get() { return *static_cast<const Table*>(table()); }
};

// Every family of this module, in registration order.
const std::vector<FamilyBase*>& kernel_families();
FamilyBase* find_family(const std::string& name);  // null if none

// The ISA cap: -1 for none. isa_cap() reads LOWBIT_FORCE_ISA on first use (throws
// std::invalid_argument for an unknown ISA or one this CPU cannot run).
int isa_cap();
void set_isa_cap(int isa);  // throws like force(); re-resolves every family

}  // namespace lowbit

#define LOWBIT_FE_1(m, f, x) m(f, x)
#define LOWBIT_FE_2(m, f, x, ...) m(f, x) LOWBIT_FE_1(m, f, __VA_ARGS__)
#define LOWBIT_FE_3(m, f, x, ...) m(f, x) LOWBIT_FE_2(m, f, __VA_ARGS__)
#define LOWBIT_FE_4(m, f, x, ...) m(f, x) LOWBIT_FE_3(m, f, __VA_ARGS__)
#define LOWBIT_FE_5(m, f, x, ...) m(f, x) LOWBIT_FE_4(m, f, __VA_ARGS__)
#define LOWBIT_FE_6(m, f, x, ...) m(f, x) LOWBIT_FE_5(m, f, __VA_ARGS__)
#define LOWBIT_FE_7(m, f, x, ...) m(f, x) LOWBIT_FE_6(m, f, __VA_ARGS__)
#define LOWBIT_FE_8(m, f, x, ...) m(f, x) LOWBIT_FE_7(m, f, __VA_ARGS__)
#define LOWBIT_FE_9(m, f, x, ...) m(f, x) LOWBIT_FE_8(m, f, __VA_ARGS__)
#define LOWBIT_FE_PICK(_1, _2, _3, _4, _5, _6, _7, _8, _9, N, ...) N
#define LOWBIT_FOR_EACH(m, f, ...)                                                                   \
  LOWBIT_FE_PICK(__VA_ARGS__, LOWBIT_FE_9, LOWBIT_FE_8, LOWBIT_FE_7, LOWBIT_FE_6, LOWBIT_FE_5,      \
                 LOWBIT_FE_4, LOWBIT_FE_3, LOWBIT_FE_2, LOWBIT_FE_1, )(m, f, __VA_ARGS__)

#define LOWBIT_VARIANT_DECL_(f, isa) extern const f##_table_t f##_##isa;
#define LOWBIT_VARIANT_ENTRY_(f, isa) ::lowbit::VariantEntry{::lowbit::Isa::isa, LOWBIT_IF_BUILT_##isa(&f##_##isa)},

// In the family header, inside namespace lowbit.
#define LOWBIT_KERNEL_FAMILY(f, Table, ...)                                                           \
  using f##_table_t = Table;                                                                         \
  LOWBIT_FOR_EACH(LOWBIT_VARIANT_DECL_, f, __VA_ARGS__)                                              \
  extern ::lowbit::KernelFamily<Table> f##_family;                                                   \
  inline const Table& f##_kernels() { return f##_family.get(); }                                    \
  inline std::vector<::lowbit::VariantEntry> f##_variant_list() {                                  \
    return {LOWBIT_FOR_EACH(LOWBIT_VARIANT_ENTRY_, f, __VA_ARGS__)};                                 \
  }                                                                                                  \
  static_assert(true, "")

// In the family's driver (one .cpp), inside namespace lowbit.
#define LOWBIT_KERNEL_FAMILY_INSTANCE(f) ::lowbit::KernelFamily<f##_table_t> f##_family(#f, f##_variant_list())
