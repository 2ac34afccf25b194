#include "core/buffers.h"

#include <sys/mman.h>

#include <cstdlib>
#include <mutex>
#include <new>

namespace lowbit {
namespace {

constexpr int kMaxEntries = 4;
struct Entry {
  void* p = nullptr;
  size_t n = 0;
};
std::mutex g_mutex;
Entry g_cache[kMaxEntries];
size_t g_cached = 0;

size_t cap_bytes() {
  static const size_t cap = [] {
    const char* env = std::getenv("LOWBIT_BUFFER_CACHE_MB");
    long mb = env ? std::atol(env) : 1024;
    return static_cast<size_t>(mb < 0 ? 0 : mb) << 20;
  }();
  return cap;
}

size_t round_pages(size_t n) { return (n + 4095) & ~size_t(4095); }

}  // namespace

void* buffer_acquire(size_t nbytes) {
  if (nbytes < kCachedBufferMin) {  // cache-line aligned (malloc gives 16 bytes: split 32-byte loads)
    void* p = std::aligned_alloc(64, (nbytes + 63) / 64 * 64 + (nbytes == 0 ? 64 : 0));
    if (!p) throw std::bad_alloc();
    return p;
  }
  size_t n = round_pages(nbytes);
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    for (Entry& e : g_cache) {
      if (e.p && e.n == n) {
        void* p = e.p;
        e = Entry();
        g_cached -= n;
        return p;
      }
    }
  }
  void* p = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE
  madvise(p, n, MADV_HUGEPAGE);
#endif
  return p;
}

void buffer_release(void* p, size_t nbytes) {
  if (!p) return;
  if (nbytes < kCachedBufferMin) {
    std::free(p);
    return;
  }
  size_t n = round_pages(nbytes);
  std::unique_lock<std::mutex> lock(g_mutex);
  if (n <= cap_bytes()) {
    // Make room: evict entries (oldest slot first) until this one fits.
    for (Entry& e : g_cache) {
      if (g_cached + n <= cap_bytes()) break;
      if (e.p) {
        munmap(e.p, e.n);
        g_cached -= e.n;
        e = Entry();
      }
    }
    if (g_cached + n <= cap_bytes()) {
      for (Entry& e : g_cache) {
        if (!e.p) {
          e.p = p;
          e.n = n;
          g_cached += n;
          return;
        }
      }
      // All slots full: replace the first.
      munmap(g_cache[0].p, g_cache[0].n);
      g_cached -= g_cache[0].n;
      g_cache[0] = Entry{p, n};
      g_cached += n;
      return;
    }
  }
  lock.unlock();
  munmap(p, n);
}

void buffers_release() {
  std::lock_guard<std::mutex> lock(g_mutex);
  for (Entry& e : g_cache) {
    if (e.p) munmap(e.p, e.n);
    e = Entry();
  }
  g_cached = 0;
}

size_t buffers_cached_bytes() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_cached;
}

}  // namespace lowbit
