// Minimal std::thread parallel-for for the CPU kernels.
//
// OpenMP is deliberately not used: torch wheels bundle their own libgomp, and loading a second
// OpenMP runtime into the same process is a known source of crashes and oversubscription.
#pragma once

#include <algorithm>
#include <cstdint>
#include <exception>
#include <system_error>
#include <thread>
#include <vector>

namespace cendetect {

// Number of threads the kernels may use. Defaults to the environment variable
// CENDETECT_NUM_THREADS when set, else std::thread::hardware_concurrency().
int get_num_threads();
// n <= 0 restores the default.
void set_num_threads(int n);

// Calls fn(begin, end) on disjoint chunks covering [0, n). Chunks hold at least `grain` items;
// the calling thread works on the first chunk. The first exception thrown by any chunk (e.g.
// std::bad_alloc) is rethrown here once every thread has finished.
template <typename F>
void parallel_for(int64_t n, int64_t grain, const F& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int64_t max_chunks = (n + grain - 1) / grain;
  const int64_t n_chunks = std::min<int64_t>(get_num_threads(), max_chunks);
  if (n_chunks <= 1) {
    fn(int64_t{0}, n);
    return;
  }
  const int64_t step = (n + n_chunks - 1) / n_chunks;
  std::vector<std::exception_ptr> errors(static_cast<size_t>(n_chunks));
  auto run = [&fn, &errors](int64_t chunk, int64_t begin, int64_t end) {
    try {
      fn(begin, end);
    } catch (...) {
      errors[static_cast<size_t>(chunk)] = std::current_exception();
    }
  };
  std::vector<std::thread> workers;
  workers.reserve(static_cast<size_t>(n_chunks - 1));
  int64_t chunk = 1;
  for (; chunk * step < n; ++chunk) {
    const int64_t begin = chunk * step;
    try {
      workers.emplace_back(run, chunk, begin, std::min(n, begin + step));
    } catch (const std::system_error&) {
      break;  // no more threads to be had: the remaining chunks run on this one
    }
  }
  run(0, 0, std::min(n, step));
  for (; chunk * step < n; ++chunk) run(chunk, chunk * step, std::min(n, chunk * step + step));
  for (auto& w : workers) w.join();
  for (const auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
}

}  // namespace cendetect
