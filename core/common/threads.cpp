#include "core/common/threads.h"

#include <ATen/Parallel.h>

#include <unistd.h>

#include <cstdlib>
#include <thread>

namespace hedgelab {

void prefer_passive_openmp_wait(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr) return;
  ::setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
  ::execv("/proc/self/exe", argv);  // only returns on failure: then run on with the spinning default
}

namespace {
bool g_threads_chosen = false;  // a configure_threads() call named a count
}

int configure_threads(int requested) {
  int n = requested > 0 ? requested : static_cast<int>(std::thread::hardware_concurrency());
  if (n <= 0) n = 1;
  at::set_num_threads(n);
  g_threads_chosen = requested > 0;
  return n;
}

int apply_recipe_threads(int recipe_threads) {
  if (recipe_threads <= 0 || g_threads_chosen) return at::get_num_threads();
  at::set_num_threads(recipe_threads);
  return recipe_threads;
}

}  // namespace hedgelab
