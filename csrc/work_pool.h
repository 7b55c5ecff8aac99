// A persistent worker pool for the compositor: run_chunks(n, fn) calls fn(k) once for every
// k in [0, n), on the calling thread and on up to get_num_threads() - 1 workers.
//
// Why not parallel_for (parallel.h): it starts std::threads per call and joins them, so a call
// waits for every worker to have been scheduled. On a loaded 2-core machine that wait is a CFS
// time slice, ~4 ms, far longer than a typical composite (benchmarks/bench_compositor.py).
// Here chunks are claimed from an atomic counter: the caller starts at once, a late worker finds
// nothing left, and the call returns when every claimed chunk is finished, without waiting for
// workers that never woke up. Which thread runs a chunk does not change its result.
//
// The thread count is parallel.h's (CENDETECT_NUM_THREADS / set_num_threads). Calls from several
// threads at once are fine: a call that finds the pool busy runs its chunks itself. After fork()
// the child starts a fresh pool. The first exception thrown by fn is rethrown once all claimed
// chunks are done; chunks not yet claimed by then are skipped.
#pragma once

#include <cstdint>
#include <functional>

namespace cendetect {

void run_chunks(int64_t n, const std::function<void(int64_t)>& fn);

}  // namespace cendetect
