// A small persistent thread pool for the kernels.
//
// parallel_for(n, grain, fn) calls fn(begin, end, tid) on disjoint chunks covering
// [0, n), chunks of at least `grain` items, on up to num_threads() threads (the
// calling thread is one of them). Calls from inside a pool thread, or from a
// second Python thread while the pool is busy, run inline on the caller: always
// correct, never a deadlock. The pool is rebuilt lazily after fork(). Work runs
// under the default floating-point environment (x86: MXCSR round-to-nearest-even,
// no FTZ/DAZ), whatever the caller set, so results never depend on it.
//
// The task index `tid` says which of the call's concurrent tasks runs a chunk:
//   - two chunks of one call that run at the same time have different tids, and the
//     chunks of one tid run one after another (so tid can index per-call scratch);
//   - 0 <= tid < max_tasks when max_tasks > 0, and always tid < kMaxThreads;
//   - the calling thread is tid 0; a call that runs inline (a nested call from a pool
//     thread, a second Python thread while the pool is busy, one thread, n <= grain)
//     is one task, tid 0, whatever its caller's tid was;
//   - set_num_threads racing a call changes neither: a call keeps the pool it started
//     on, and max_tasks caps the tasks whatever the pool's size.
// tids are unique within one call only: scratch indexed by tid belongs to the call
// (ThreadScratch below), never to a thread.
//
// Whose threads: lowbit's own pool (above), or an OpenMP runtime already loaded in the
// process (use_openmp_threads), e.g. PyTorch's. A process that runs torch's OpenMP
// operators between lowbit's kernels has torch's workers spinning on the cores after each
// operator; a second pool then waits for a core while the first spins, and the two take
// turns instead of working together. On the OpenMP runtime lowbit's chunks run on the
// same (hot) workers, each chunk as above (tid = the OpenMP thread number), and the call
// keeps every guarantee listed here.
#pragma once
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace lowbit {

constexpr int kMaxThreads = 1024;  // set_num_threads and LOWBIT_NUM_THREADS are capped here

// The threads a call may use: set_num_threads's n, else LOWBIT_NUM_THREADS, else on a
// shared OpenMP runtime that runtime's omp_get_max_threads() (torch.set_num_threads),
// else default_num_threads().
int num_threads();
void set_num_threads(int n);  // n >= 1; waits for running work to finish
// LOWBIT_NUM_THREADS, else the CPUs this process may use: its affinity mask, capped by
// a cgroup CPU quota (a container started with --cpus=N sees every host core).
int default_num_threads();
// CPUs a cgroup quota allows (rounded up), from cpu.max (v2) or cfs_quota_us and
// cfs_period_us (v1) file texts; 0 when there is no quota. Exposed for tests.
int cpu_quota_limit(const std::string& v2_cpu_max, const std::string& v1_quota, const std::string& v1_period);

// Run on the OpenMP runtime loaded in this process that exports GOMP_parallel (libgomp,
// and the GOMP interface of LLVM's libomp and Intel's libiomp5): the first loaded object
// whose path contains `prefer`, else the first one. Returns its path, "" when no loaded
// object has it (nothing changes then). use_own_threads() goes back to lowbit's pool.
std::string use_openmp_threads(const std::string& prefer = "");
void use_own_threads();
std::string openmp_runtime();  // the runtime in use, "" for lowbit's own pool
bool in_openmp_team();         // this thread runs in a parallel region of that runtime

using TaskFn = std::function<void(size_t begin, size_t end, int tid)>;
void parallel_for(size_t n, size_t grain, const TaskFn& fn, int max_tasks = 0);
// The same without the task index, for kernels that need no per-task state.
void parallel_for(size_t n, size_t grain, const std::function<void(size_t begin, size_t end)>& fn);

// Per-task working memory for one parallel_for call: slot tid (tid < slots()) holds
// `bytes` bytes, 64-byte aligned, not zeroed, allocated when that task first asks for
// it and reused by every later chunk of the same tid, so a kernel allocates once per
// thread instead of once per work item. Create it before the call, pass slots() as
// max_tasks (or use the overload below), ask for get(tid) inside the task.
class ThreadScratch {
 public:
  explicit ThreadScratch(size_t bytes, int slots = num_threads());
  ThreadScratch(const ThreadScratch&) = delete;
  ThreadScratch& operator=(const ThreadScratch&) = delete;
  size_t bytes() const { return bytes_; }
  int slots() const { return static_cast<int>(slot_.size()); }
  void* get(int tid);  // 0 <= tid < slots(); only task tid may use the returned memory

 private:
  struct Free {
    void operator()(unsigned char* p) const;
  };
  size_t bytes_;
  std::vector<std::unique_ptr<unsigned char, Free>> slot_;
};

// fn(begin, end, scratch): parallel_for with at most scratch.slots() tasks, each handed
// its own slot.
void parallel_for(size_t n, size_t grain, ThreadScratch& scratch,
                  const std::function<void(size_t begin, size_t end, void* scratch)>& fn);

}  // namespace lowbit
