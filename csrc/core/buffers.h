// Reuse of large output buffers.
//
// A fresh multi-megabyte allocation is a fresh mmap: the kernel zeroes every page
// on first touch, which costs about as much as writing the output itself. Output
// arrays of kernels are therefore allocated here: a buffer freed by NumPy goes
// into a small cache and the next request of the same size reuses it, already
// faulted in. Bounded: at most kMaxEntries buffers and LOWBIT_BUFFER_CACHE_MB
// (default 1024) bytes; buffers_release() empties the cache.
#pragma once
#include <cstddef>

namespace lowbit {

constexpr size_t kCachedBufferMin = size_t(4) << 20;  // smaller requests: plain malloc

void* buffer_acquire(size_t nbytes);              // 64-byte aligned, never null; throws std::bad_alloc
void buffer_release(void* p, size_t nbytes);      // p from buffer_acquire(nbytes)
void buffers_release();                           // return every cached buffer to the OS
size_t buffers_cached_bytes();

}  // namespace lowbit
