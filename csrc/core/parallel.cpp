#include "core/parallel.h"

#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <vector>

#if defined(LOWBIT_X86)
#include <xmmintrin.h>
#endif

namespace lowbit {
namespace {

// Kernels assume the default floating-point environment: round to nearest even,
// no flush-to-zero, no denormals-are-zero (a caller may have set FTZ/DAZ, e.g.
// torch.set_flush_denormal). Every thread that runs kernel code uses it.
#if defined(LOWBIT_X86)
constexpr unsigned kDefaultMxcsr = 0x1F80;  // all exceptions masked, RN, no FTZ/DAZ
struct FpEnvGuard {
  unsigned saved = _mm_getcsr();
  FpEnvGuard() { if (saved != kDefaultMxcsr) _mm_setcsr(kDefaultMxcsr); }
  ~FpEnvGuard() { if (saved != kDefaultMxcsr) _mm_setcsr(saved); }
};
#else
struct FpEnvGuard {
  FpEnvGuard() {}  // nothing to set here; user-provided, so an unused guard draws no warning
};
#endif

thread_local bool t_in_pool = false;

// How long an idle worker spins before it sleeps.
constexpr auto kSpin = std::chrono::microseconds(200);
inline void cpu_relax() {
#if defined(LOWBIT_X86)
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

// One call's work: chunks of `chunk` items of [0, n) handed out by one counter to every
// task that drains it; the first exception a chunk throws is kept for the caller to raise
// once every task has returned (nothing unwinds through a worker or an OpenMP runtime).
struct Chunks {
  const TaskFn* fn = nullptr;
  size_t n = 0, chunk = 1;
  std::atomic<size_t> next{0};
  std::mutex err_m;
  std::exception_ptr error;

  void reset(const TaskFn& f, size_t items, size_t per_chunk) {
    fn = &f;
    n = items;
    chunk = per_chunk;
    next.store(0, std::memory_order_relaxed);
    error = nullptr;
  }
  void drain(int tid) {
    for (;;) {
      size_t b = next.fetch_add(chunk, std::memory_order_relaxed);
      if (b >= n) return;
      try {
        (*fn)(b, std::min(n, b + chunk), tid);
      } catch (...) {
        std::lock_guard<std::mutex> lock(err_m);
        if (!error) error = std::current_exception();
      }
    }
  }
};

class Pool {
 public:
  explicit Pool(int threads) {
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { work(); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(m_);
      stop_ = true;
      ++generation_;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
  }
  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Caller holds the run lock. At most max_tasks tasks (the caller and helpers): tids
  // 0 (the caller) and 1..helpers (workers, in the order they join).
  void run(size_t n, size_t chunk, const TaskFn& fn, int max_tasks) {
    work_.reset(fn, n, chunk);
    size_t nchunks = (n + chunk - 1) / chunk;
    int helpers = static_cast<int>(
        std::min({workers_.size(), nchunks - 1, static_cast<size_t>(std::max(max_tasks, 1) - 1)}));
    active_.store(helpers, std::memory_order_relaxed);
    {
      std::lock_guard<std::mutex> lock(m_);
      wanted_ = helpers;
      ++generation_;
    }
    if (helpers > 0) cv_.notify_all();
    t_in_pool = true;
    work_.drain(0);
    t_in_pool = false;
    if (helpers > 0) {
      // Every chunk is taken: helpers that have not joined yet (no free core to wake on:
      // another thread pool spinning, another process) are not waited for; they will find
      // wanted_ == 0 and go back to sleep. Only the helpers that joined may still be running.
      std::lock_guard<std::mutex> lock(m_);
      if (wanted_ > 0) {
        active_.fetch_sub(wanted_, std::memory_order_relaxed);
        wanted_ = 0;
      }
    }
    while (active_.load(std::memory_order_acquire) != 0) std::this_thread::yield();
    work_.fn = nullptr;
    if (work_.error) std::rethrow_exception(work_.error);
  }

  std::mutex run_lock;

 private:
  void spin_while_idle(unsigned long long seen) const {
    const auto until = std::chrono::steady_clock::now() + kSpin;
    for (;;) {
      for (int i = 0; i < 64; ++i) {
        if (generation_.load(std::memory_order_acquire) != seen) return;
        cpu_relax();
      }
      if (std::chrono::steady_clock::now() >= until) return;
      // Give the core to a thread that shares it (more threads than free cores: the
      // caller, a worker with a chunk, another process); returns at once otherwise.
      sched_yield();
    }
  }
  void work() {
    t_in_pool = true;
    FpEnvGuard fp_env;
    unsigned long long seen = 0;
    int tid = 0;
    for (;;) {
      // Kernels come in bursts (one call per layer): spin a little before
      // sleeping, since waking a sleeping thread costs tens of microseconds
      // (more in a VM), as long as a whole small matmul.
      spin_while_idle(seen);
      {
        std::unique_lock<std::mutex> lock(m_);
        cv_.wait(lock, [&] { return generation_.load(std::memory_order_relaxed) != seen; });
        seen = generation_.load(std::memory_order_relaxed);
        if (stop_) return;
        if (wanted_ <= 0) continue;
        tid = wanted_--;  // helpers .. 1: unique within the call
      }
      work_.drain(tid);
      active_.fetch_sub(1, std::memory_order_release);
    }
  }

  std::vector<std::thread> workers_;
  std::mutex m_;
  std::condition_variable cv_;
  std::atomic<unsigned long long> generation_{0};
  int wanted_ = 0;
  bool stop_ = false;
  Chunks work_;
  std::atomic<int> active_{0};
};

// An OpenMP runtime loaded by someone else (torch): GOMP_parallel runs fn(data) on a team
// of num_threads threads (the caller is thread 0) and returns when all have.
struct OmpRuntime {
  void (*parallel)(void (*fn)(void*), void* data, unsigned num_threads, unsigned flags) = nullptr;
  int (*thread_num)() = nullptr;
  int (*in_parallel)() = nullptr;
  int (*max_threads)() = nullptr;  // the team size a region started by this thread gets
  std::string path;
};
std::atomic<const OmpRuntime*> g_omp{nullptr};  // runtimes are never freed: a call may hold one
std::mutex g_omp_run;  // one call at a time on the runtime's team; a second caller runs inline

struct OmpCall {
  Chunks work;
  int (*thread_num)();
};

void omp_task(void* data) {  // every thread of the team: chunks until none is left
  OmpCall& c = *static_cast<OmpCall*>(data);
  FpEnvGuard fp_env;  // the runtime's threads are not ours: restore their MXCSR after
  const bool outer = t_in_pool;
  t_in_pool = true;   // a kernel inside a chunk runs inline, as in lowbit's pool
  c.work.drain(c.thread_num());
  t_in_pool = outer;
}

// LOWBIT_NUM_THREADS (capped at kMaxThreads), 0 when unset or not a count.
int env_num_threads() {
  const char* env = std::getenv("LOWBIT_NUM_THREADS");
  const int n = env ? std::atoi(env) : 0;
  return n >= 1 ? std::min(n, kMaxThreads) : 0;
}

std::mutex g_pool_mutex;     // guards g_pool and g_threads
Pool* g_pool = nullptr;
int g_threads = 0;           // 0: not yet resolved
bool g_threads_set = false;  // by set_num_threads or LOWBIT_NUM_THREADS
std::once_flag g_atfork_once;

void after_fork_in_child() {
  // The worker threads do not exist in the child: forget the pool (leaking it
  // is the only safe option) and build a new one on first use. GNU libgomp's team
  // does not survive fork either (a parallel region in the child can hang): the
  // child goes back to lowbit's own pool.
  g_pool = nullptr;
  new (&g_pool_mutex) std::mutex();
  g_omp.store(nullptr);
  new (&g_omp_run) std::mutex();
}

int threads_locked() {
  if (g_threads == 0) {
    g_threads = default_num_threads();
    g_threads_set = env_num_threads() > 0;
  }
  // On a shared OpenMP runtime the count the user gave that runtime (torch.set_num_threads,
  // OMP_NUM_THREADS) unless lowbit was given one: torch's default is the physical cores,
  // ours the logical CPUs, and a larger team would leave threads spinning beside torch's.
  if (!g_threads_set)
    if (const OmpRuntime* rt = g_omp.load(std::memory_order_acquire))
      return std::min(std::max(rt->max_threads(), 1), kMaxThreads);
  return g_threads;
}

}  // namespace

int cpu_quota_limit(const std::string& v2_cpu_max, const std::string& v1_quota, const std::string& v1_period) {
  long long quota = -1, period = 0;
  if (!v2_cpu_max.empty()) {  // cgroup v2 "cpu.max": "<quota> <period>" or "max <period>"
    if (std::sscanf(v2_cpu_max.c_str(), "%lld %lld", &quota, &period) != 2) quota = -1;
  } else if (!v1_quota.empty() && !v1_period.empty()) {  // v1: cfs_quota_us (-1: none), cfs_period_us
    quota = std::atoll(v1_quota.c_str());
    period = std::atoll(v1_period.c_str());
  }
  if (quota <= 0 || period <= 0) return 0;
  long long n = (quota + period - 1) / period;
  return static_cast<int>(std::min<long long>(std::max<long long>(n, 1), 1024));
}

namespace {

std::string read_small_file(const char* path) {
  std::string out;
  if (FILE* f = std::fopen(path, "r")) {
    char buf[128];
    size_t n = std::fread(buf, 1, sizeof(buf) - 1, f);
    std::fclose(f);
    out.assign(buf, n);
  }
  return out;
}

// The CPU time a container may use (docker --cpus, Kubernetes limits): the affinity
// mask still lists every host core there, and one spinning worker per host core
// would share the few the quota allows.
int cgroup_cpu_limit() {
  int n = cpu_quota_limit(read_small_file("/sys/fs/cgroup/cpu.max"), "", "");
  if (n == 0)
    n = cpu_quota_limit("", read_small_file("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"),
                        read_small_file("/sys/fs/cgroup/cpu/cpu.cfs_period_us"));
  return n;
}

}  // namespace

int default_num_threads() {
  if (int n = env_num_threads()) return n;
  int n = 0;
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) n = CPU_COUNT(&set);
  if (n < 1) {
    unsigned hc = std::thread::hardware_concurrency();
    n = hc ? static_cast<int>(hc) : 1;
  }
  if (int limit = cgroup_cpu_limit(); limit > 0) n = std::min(n, limit);
  return n;
}

int num_threads() {
  std::lock_guard<std::mutex> lock(g_pool_mutex);
  return threads_locked();
}

void set_num_threads(int n) {
  if (n < 1) n = 1;
  Pool* old = nullptr;
  {
    std::lock_guard<std::mutex> lock(g_pool_mutex);
    g_threads = std::min(n, kMaxThreads);
    g_threads_set = true;
    old = g_pool;
    g_pool = nullptr;
  }
  if (old) {
    std::lock_guard<std::mutex> wait_for_work(old->run_lock);
  }
  delete old;
}

namespace {

struct LoadedObjects {
  std::vector<std::string> paths;
};
int collect_object(dl_phdr_info* info, size_t, void* data) {
  if (info->dlpi_name && info->dlpi_name[0]) static_cast<LoadedObjects*>(data)->paths.emplace_back(info->dlpi_name);
  return 0;
}

}  // namespace

std::string use_openmp_threads(const std::string& prefer) {
  LoadedObjects loaded;
  dl_iterate_phdr(collect_object, &loaded);
  std::stable_partition(loaded.paths.begin(), loaded.paths.end(), [&](const std::string& p) {
    return !prefer.empty() && p.find(prefer) != std::string::npos;
  });
  for (const std::string& path : loaded.paths) {
    // RTLD_NOLOAD: a handle to what is already loaded, never a new library.
    void* h = dlopen(path.c_str(), RTLD_LAZY | RTLD_LOCAL | RTLD_NOLOAD);
    if (!h) continue;
    void* par = dlsym(h, "GOMP_parallel");
    void* num = dlsym(h, "omp_get_thread_num");
    void* inp = dlsym(h, "omp_in_parallel");
    void* mt = dlsym(h, "omp_get_max_threads");
    Dl_info where{};
    // dlsym also searches the object's dependencies: name the object that defines it.
    if (!par || !num || !inp || !mt || !dladdr(par, &where) || !where.dli_fname) continue;
    auto* rt = new OmpRuntime;
    rt->parallel = reinterpret_cast<decltype(rt->parallel)>(par);
    rt->thread_num = reinterpret_cast<int (*)()>(num);
    rt->in_parallel = reinterpret_cast<int (*)()>(inp);
    rt->max_threads = reinterpret_cast<int (*)()>(mt);
    rt->path = where.dli_fname;
    std::lock_guard<std::mutex> lock(g_omp_run);  // not while a call runs on the old one
    g_omp.store(rt, std::memory_order_release);
    return rt->path;
  }
  return "";
}

void use_own_threads() {
  std::lock_guard<std::mutex> lock(g_omp_run);
  g_omp.store(nullptr, std::memory_order_release);
}

std::string openmp_runtime() {
  const OmpRuntime* rt = g_omp.load(std::memory_order_acquire);
  return rt ? rt->path : std::string();
}

bool in_openmp_team() {
  const OmpRuntime* rt = g_omp.load(std::memory_order_acquire);
  return rt && rt->in_parallel();
}

void parallel_for(size_t n, size_t grain, const TaskFn& fn, int max_tasks) {
  if (n == 0) return;
  FpEnvGuard fp_env;
  if (grain == 0) grain = 1;
  if (max_tasks <= 0 || max_tasks > kMaxThreads) max_tasks = kMaxThreads;
  Pool* pool = nullptr;
  const OmpRuntime* omp = nullptr;
  int threads = 1;
  std::unique_lock<std::mutex> run;
  if (!t_in_pool && n > grain && max_tasks > 1) {
    std::call_once(g_atfork_once, [] { pthread_atfork(nullptr, nullptr, after_fork_in_child); });
    std::lock_guard<std::mutex> lock(g_pool_mutex);
    threads = threads_locked();
    if (threads > 1) {
      if (g_omp.load(std::memory_order_acquire)) {
        // the runtime, read again under its lock (use_openmp_threads switches it under that
        // lock); busy with another caller, or called inside one of the runtime's own parallel
        // regions: run inline, as a nested call does
        run = std::unique_lock<std::mutex>(g_omp_run, std::try_to_lock);
        if (run.owns_lock()) omp = g_omp.load(std::memory_order_acquire);
        if (omp && omp->in_parallel()) omp = nullptr;
        if (!omp && run.owns_lock()) run.unlock();
      } else {
        if (!g_pool) g_pool = new Pool(threads);
        pool = g_pool;
        run = std::unique_lock<std::mutex>(pool->run_lock, std::try_to_lock);
        if (!run.owns_lock()) pool = nullptr;  // busy with another caller: run inline
      }
    }
  }
  if (!pool && !omp) {
    fn(0, n, 0);
    return;
  }
  // About eight chunks per thread: a thread that starts late (a worker that was
  // asleep, a vCPU the host took away) or rows of uneven cost leave at most one
  // small chunk for the others; `grain` keeps each chunk worth its fetch_add.
  const int tasks = std::min(pool ? pool->size() : threads, max_tasks);
  size_t target = static_cast<size_t>(tasks) * 8;
  size_t chunk = std::max(grain, (n + target - 1) / target);
  if (pool) return pool->run(n, chunk, fn, max_tasks);
  OmpCall call{{}, omp->thread_num};
  call.work.reset(fn, n, chunk);
  const size_t team = std::min<size_t>(static_cast<size_t>(tasks), (n + chunk - 1) / chunk);
  omp->parallel(omp_task, &call, static_cast<unsigned>(team), 0);
  if (call.work.error) std::rethrow_exception(call.work.error);
}

void parallel_for(size_t n, size_t grain, const std::function<void(size_t, size_t)>& fn) {
  parallel_for(n, grain, TaskFn([&fn](size_t b, size_t e, int) { fn(b, e); }));
}

void ThreadScratch::Free::operator()(unsigned char* p) const { ::operator delete(p, std::align_val_t{64}); }

ThreadScratch::ThreadScratch(size_t bytes, int slots)
    : bytes_(bytes), slot_(static_cast<size_t>(std::min(std::max(slots, 1), kMaxThreads))) {}

void* ThreadScratch::get(int tid) {
  auto& s = slot_.at(static_cast<size_t>(tid));
  if (!s) s.reset(static_cast<unsigned char*>(::operator new(std::max<size_t>(bytes_, 1), std::align_val_t{64})));
  return s.get();
}

void parallel_for(size_t n, size_t grain, ThreadScratch& scratch,
                  const std::function<void(size_t, size_t, void*)>& fn) {
  parallel_for(
      n, grain, TaskFn([&](size_t b, size_t e, int tid) { fn(b, e, scratch.get(tid)); }), scratch.slots());
}

}  // namespace lowbit
