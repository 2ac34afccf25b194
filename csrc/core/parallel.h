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

namespace lowbit {

int num_threads();
void set_num_threads(int n);  // n >= 1; waits for running work to finish
int default_num_threads();    // LOWBIT_NUM_THREADS, else the CPUs this process may use

void parallel_for(size_t n, size_t grain, const std::function<void(size_t, size_t)>& fn);

}  // namespace lowbit
