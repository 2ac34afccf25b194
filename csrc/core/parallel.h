// A small persistent thread pool for the kernels.
//
// parallel_for(n, grain, fn) calls fn(begin, end) on disjoint chunks covering
// [0, n), chunks of at least `grain` items, on up to num_threads() threads (the
// calling thread is one of them). Calls from inside a pool thread, or from a
// second Python thread while the pool is busy, run inline on the caller: always
// correct, never a deadlock. The pool is rebuilt lazily after fork(). Work runs
// under the default floating-point environment (x86: MXCSR round-to-nearest-even,
// no FTZ/DAZ), whatever the caller set, so results never depend on it.
#pragma once
#include <cstddef>
#include <functional>
#include <string>

namespace lowbit {

int num_threads();
void set_num_threads(int n);  // n >= 1; waits for running work to finish
// LOWBIT_NUM_THREADS, else the CPUs this process may use: its affinity mask, capped by
// a cgroup CPU quota (a container started with --cpus=N sees every host core).
int default_num_threads();
// CPUs a cgroup quota allows (rounded up), from cpu.max (v2) or cfs_quota_us and
// cfs_period_us (v1) file texts; 0 when there is no quota. Exposed for tests.
int cpu_quota_limit(const std::string& v2_cpu_max, const std::string& v1_quota, const std::string& v1_period);

void parallel_for(size_t n, size_t grain, const std::function<void(size_t, size_t)>& fn);

}  // namespace lowbit
