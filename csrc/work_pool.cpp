#include "work_pool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

#include "parallel.h"

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#define CD_HAVE_GETPID 1
#endif

namespace cendetect {
namespace {

long current_pid() {
#ifdef CD_HAVE_GETPID
  return static_cast<long>(::getpid());
#else
  return 0;
#endif
}

// One call's chunks. Workers hold it by shared_ptr, so one that wakes after the call returned
// still reads valid memory; it finds no chunk left and never touches `fn`.
struct Job {
  Job(int64_t n, const std::function<void(int64_t)>* f) : n(n), fn(f) {}

  void work() {
    for (int64_t k; (k = next.fetch_add(1, std::memory_order_relaxed)) < n;) {
      if (!failed.load(std::memory_order_relaxed)) {
        try {
          (*fn)(k);
        } catch (...) {
          std::lock_guard<std::mutex> lock(m);
          if (!error) error = std::current_exception();
          failed.store(true, std::memory_order_relaxed);
        }
      }
      if (done.fetch_add(1, std::memory_order_acq_rel) + 1 == n) {
        std::lock_guard<std::mutex> lock(m);
        cv.notify_all();
      }
    }
  }

  void wait() {
    std::unique_lock<std::mutex> lock(m);
    cv.wait(lock, [this] { return done.load(std::memory_order_acquire) >= n; });
  }

  const int64_t n;
  const std::function<void(int64_t)>* fn;  // valid until done == n
  std::atomic<int64_t> next{0}, done{0};
  std::atomic<bool> failed{false};
  std::exception_ptr error;
  std::mutex m;
  std::condition_variable cv;
};

class Pool {
 public:
  const long pid = current_pid();

  // Runs the job with up to `helpers` workers; false when the pool is busy with another call.
  bool run(const std::shared_ptr<Job>& job, int helpers) {
    std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
    if (!busy.owns_lock()) return false;
    {
      std::lock_guard<std::mutex> lock(m_);
      while (static_cast<int>(workers_.size()) < helpers) {
        const int index = static_cast<int>(workers_.size());
        try {
          workers_.emplace_back([this, index] { loop(index); });
        } catch (const std::system_error&) {
          break;  // no more threads to be had: fewer helpers
        }
      }
      job_ = job;
      wanted_ = helpers;
      ++generation_;
    }
    cv_.notify_all();
    job->work();
    job->wait();
    std::lock_guard<std::mutex> lock(m_);
    job_.reset();
    return true;
  }

 private:
  void loop(int index) {
    uint64_t seen = 0;
    for (;;) {
      std::shared_ptr<Job> job;
      {
        std::unique_lock<std::mutex> lock(m_);
        cv_.wait(lock, [&] { return generation_ != seen; });
        seen = generation_;
        if (index < wanted_) job = job_;
      }
      if (job) job->work();
    }
  }

  std::mutex busy_, m_;
  std::condition_variable cv_;
  std::vector<std::thread> workers_;
  std::shared_ptr<Job> job_;
  uint64_t generation_ = 0;
  int wanted_ = 0;
};

// The pool of this process. Never destroyed: workers block on its condition variable until the
// process exits, and tearing it down during interpreter shutdown would race with them. A forked
// child (whose copy has no worker threads, and maybe mutexes held by threads that are gone)
// gets a new one.
Pool& pool() {
  static std::atomic<Pool*> current{new Pool};
  Pool* p = current.load(std::memory_order_acquire);
  while (p->pid != current_pid()) {
    Pool* fresh = new Pool;
    if (current.compare_exchange_strong(p, fresh, std::memory_order_acq_rel)) return *fresh;
    delete fresh;  // another thread of the child installed one first; p now holds it
  }
  return *p;
}

}  // namespace

void run_chunks(int64_t n, const std::function<void(int64_t)>& fn) {
  if (n <= 0) return;
  const int helpers = static_cast<int>(std::min<int64_t>(get_num_threads(), n) - 1);
  auto job = std::make_shared<Job>(n, &fn);
  if (helpers <= 0 || !pool().run(job, helpers)) job->work();
  if (job->error) std::rethrow_exception(job->error);
}

}  // namespace cendetect
