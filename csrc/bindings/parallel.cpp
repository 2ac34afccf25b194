// Test hook for core/parallel.h: runs parallel_for with tasks that check what the
// header promises (every item once, task indices in bounds and never shared by two
// tasks running at once, per-task scratch not touched by another task), on lowbit's
// pool or on an OpenMP runtime.
#include <atomic>
#include <chrono>
#include <cstring>
#include <vector>

#include "bindings/registry.h"
#include "core/parallel.h"

using namespace lowbit;

namespace {

struct Report {
  std::vector<std::atomic<int>> covered, busy;
  std::atomic<int> overlaps{0}, bad_tid{0}, corrupt{0}, nested_bad{0}, max_tid{-1}, chunks{0}, openmp_chunks{0};
  explicit Report(size_t n) : covered(n), busy(kMaxThreads) {}
};

void spin_for(std::chrono::microseconds d) {
  const auto until = std::chrono::steady_clock::now() + d;
  while (std::chrono::steady_clock::now() < until) {
  }
}

// One task's chunk: claim the tid, fill and check its scratch, mark the items.
void task(Report& r, size_t b, size_t e, int tid, int limit, unsigned char* scratch, size_t bytes, bool nested) {
  if (tid < 0 || tid >= limit) {
    r.bad_tid++;
    return;
  }
  int seen = r.max_tid.load();
  while (tid > seen && !r.max_tid.compare_exchange_weak(seen, tid)) {
  }
  if (r.busy[tid].exchange(1)) r.overlaps++;
  r.chunks++;
  if (in_openmp_team()) r.openmp_chunks++;
  const unsigned char mark = static_cast<unsigned char>(b * 131 + tid);
  if (scratch) std::memset(scratch, mark, bytes);
  if (nested)  // from a pool thread: runs inline, one task, tid 0
    parallel_for(64, 1, [&](size_t, size_t, int inner) {
      if (inner != 0) r.nested_bad++;
    });
  spin_for(std::chrono::microseconds(20));
  if (scratch)
    for (size_t i = 0; i < bytes; ++i)
      if (scratch[i] != mark) {
        r.corrupt++;
        break;
      }
  for (size_t i = b; i < e; ++i) r.covered[i]++;
  r.busy[tid].store(0);
}

}  // namespace

LOWBIT_BINDINGS(parallel) {
  m.def(
      "_parallel_check",
      [](size_t n, size_t grain, int max_tasks, size_t scratch_bytes, bool nested) {
        Report r(n);
        int slots = 0;
        {
          py::gil_scoped_release nogil;
          if (scratch_bytes) {
            ThreadScratch scratch(scratch_bytes);
            slots = scratch.slots();
            parallel_for(
                n, grain, [&](size_t b, size_t e, int tid) {
                  unsigned char* s = tid >= 0 && tid < slots ? static_cast<unsigned char*>(scratch.get(tid)) : nullptr;
                  task(r, b, e, tid, slots, s, scratch_bytes, nested);
                },
                slots);
          } else {
            parallel_for(
                n, grain, [&](size_t b, size_t e, int tid) {
                  task(r, b, e, tid, max_tasks > 0 ? max_tasks : kMaxThreads, nullptr, 0, nested);
                },
                max_tasks);
          }
        }
        bool once = true;
        for (auto& c : r.covered) once = once && c.load() == 1;
        py::dict d;
        d["covered_once"] = once;
        d["max_tid"] = r.max_tid.load();
        d["overlaps"] = r.overlaps.load();
        d["bad_tid"] = r.bad_tid.load();
        d["corrupt"] = r.corrupt.load();
        d["nested_bad"] = r.nested_bad.load();
        d["slots"] = slots;
        d["chunks"] = r.chunks.load();
        d["openmp_chunks"] = r.openmp_chunks.load();  // chunks that ran in an OpenMP parallel region
        return d;
      },
      py::arg("n"), py::arg("grain") = 1, py::arg("max_tasks") = 0, py::arg("scratch_bytes") = 0,
      py::arg("nested") = false);
}
