#include "core/dispatch.h"

#include <cstdlib>
#include <mutex>
#include <stdexcept>

namespace lowbit {
namespace {

std::vector<FamilyBase*>& registry() {
  static std::vector<FamilyBase*> r;
  return r;
}

std::mutex& choice_mutex() {  // guards every family's choice, forcing and the cap
  static std::mutex m;
  return m;
}

constexpr int kCapUnread = -2;
int g_cap = kCapUnread;  // under choice_mutex: -2 not yet read, -1 none, else an Isa

std::string known_isas() {
  std::string s;
  for (int i = 0; i < kIsaCount; ++i) s += std::string(i ? ", " : "") + isa_name(static_cast<Isa>(i));
  return s;
}

Isa parse_isa(const std::string& name, const std::string& where) {
  Isa isa;
  if (!isa_from_name(name, &isa))
    throw std::invalid_argument(where + ": unknown ISA '" + name + "' (known: " + known_isas() + ")");
  return isa;
}

void require_runnable(Isa isa, const std::string& where) {
  if (!isa_for_this_arch(isa))
    throw std::invalid_argument(where + ": '" + isa_name(isa) + "' is not built for this architecture");
  if (!isa_supported(isa))
    throw std::invalid_argument(where + ": this CPU or OS cannot run '" + isa_name(isa) + "' (needs " +
                                isa_requires(isa) + ")");
}

int cap_locked() {
  if (g_cap == kCapUnread) {
    int cap = -1;
    const char* env = std::getenv("LOWBIT_FORCE_ISA");
    if (env && *env) {
      Isa isa = parse_isa(env, "LOWBIT_FORCE_ISA");
      require_runnable(isa, "LOWBIT_FORCE_ISA");
      cap = static_cast<int>(isa);
    }
    g_cap = cap;
  }
  return g_cap;
}

// LOWBIT_FORCE_KERNELS="int8=avx2,ternary=scalar": the variant named for `family`, or -1.
int env_forced(const std::string& family) {
  const char* env = std::getenv("LOWBIT_FORCE_KERNELS");
  if (!env || !*env) return -1;
  const std::string s = env;
  int found = -1;
  size_t pos = 0;
  while (pos <= s.size()) {
    size_t end = s.find(',', pos);
    if (end == std::string::npos) end = s.size();
    const std::string item = s.substr(pos, end - pos);
    pos = end + 1;
    if (item.empty()) continue;
    const size_t eq = item.find('=');
    if (eq == std::string::npos)
      throw std::invalid_argument("LOWBIT_FORCE_KERNELS: expected family=variant, got '" + item + "'");
    const std::string fam = item.substr(0, eq);
    if (!find_family(fam))
      throw std::invalid_argument("LOWBIT_FORCE_KERNELS: unknown kernel family '" + fam + "'");
    if (fam == family) found = static_cast<int>(parse_isa(item.substr(eq + 1), "LOWBIT_FORCE_KERNELS"));
  }
  return found;
}

}  // namespace

void reset_all_families() {
  for (FamilyBase* f : registry()) {
    f->current_.store(nullptr, std::memory_order_release);
    f->current_isa_.store(-1, std::memory_order_relaxed);
  }
}

FamilyBase::FamilyBase(const char* name, std::vector<VariantEntry> variants)
    : name_(name), variants_(std::move(variants)) {
  registry().push_back(this);
}

std::vector<Isa> FamilyBase::compiled() const {
  std::vector<Isa> out;
  for (const VariantEntry& v : variants_)
    if (v.table) out.push_back(v.isa);
  return out;
}

bool FamilyBase::has(Isa isa) const {
  for (const VariantEntry& v : variants_)
    if (v.table && v.isa == isa) return true;
  return false;
}

int FamilyBase::forced() const {
  std::lock_guard<std::mutex> lock(choice_mutex());
  return forced_;
}

Isa FamilyBase::active() {
  for (;;) {  // a concurrent reset (set_isa_cap, force) may clear the choice in between
    table();
    const int isa = current_isa_.load(std::memory_order_acquire);
    if (isa >= 0) return static_cast<Isa>(isa);
  }
}

void FamilyBase::force(int isa) {
  std::lock_guard<std::mutex> lock(choice_mutex());
  if (isa >= 0) {
    const std::string where = std::string("kernel family '") + name_ + "'";
    if (!has(static_cast<Isa>(isa)))
      throw std::invalid_argument(where + " has no '" + isa_name(static_cast<Isa>(isa)) + "' variant");
    require_runnable(static_cast<Isa>(isa), where);
  }
  forced_ = isa;
  env_read_ = true;  // an explicit choice replaces LOWBIT_FORCE_KERNELS for this family
  current_.store(nullptr, std::memory_order_release);
}

const void* FamilyBase::resolve() {
  std::lock_guard<std::mutex> lock(choice_mutex());
  if (const void* t = current_.load(std::memory_order_acquire)) return t;
  const int cap = cap_locked();
  if (!env_read_) {
    int isa = env_forced(name_);
    if (isa >= 0) {
      const std::string where = std::string("LOWBIT_FORCE_KERNELS: family '") + name_ + "'";
      if (!has(static_cast<Isa>(isa)))
        throw std::invalid_argument(where + " has no '" + isa_name(static_cast<Isa>(isa)) + "' variant");
      require_runnable(static_cast<Isa>(isa), where);
    }
    forced_ = isa;
    env_read_ = true;
  }
  const VariantEntry* pick = nullptr;
  for (const VariantEntry& v : variants_) {
    if (!v.table || !isa_supported(v.isa)) continue;
    if (forced_ >= 0) {
      if (static_cast<int>(v.isa) == forced_) pick = &v;
      continue;
    }
    const uint32_t allowed = cap >= 0 ? isa_needs(static_cast<Isa>(cap)) : ~0u;
    if ((isa_needs(v.isa) & ~allowed) != 0) continue;
    if (!pick || static_cast<int>(v.isa) > static_cast<int>(pick->isa)) pick = &v;
  }
  if (!pick) throw std::logic_error(std::string("kernel family '") + name_ + "' has no runnable variant");
  current_isa_.store(static_cast<int>(pick->isa), std::memory_order_relaxed);
  current_.store(pick->table, std::memory_order_release);
  return pick->table;
}

const std::vector<FamilyBase*>& kernel_families() { return registry(); }

FamilyBase* find_family(const std::string& name) {
  for (FamilyBase* f : registry())
    if (name == f->name()) return f;
  return nullptr;
}

int isa_cap() {
  std::lock_guard<std::mutex> lock(choice_mutex());
  return cap_locked();
}

void set_isa_cap(int isa) {
  if (isa >= 0) require_runnable(static_cast<Isa>(isa), "ISA cap");
  std::lock_guard<std::mutex> lock(choice_mutex());
  g_cap = isa;
  reset_all_families();
}

}  // namespace lowbit
