// LibTorch starts with one intra-op thread on Debian's build; every entry point calls this once.
#pragma once

namespace hedgelab {

// OpenMP threads that spin while waiting make LibTorch several times slower whenever anything else runs on
// the machine (measured 6.3K vs 15.5K tokens/s on 2 busy cores). libgomp reads OMP_WAIT_POLICY when it is
// loaded, before main(), so when the variable is unset this sets it to PASSIVE and re-executes the program
// once. Call it first thing in main(); it returns normally when nothing needed doing or exec failed.
void prefer_passive_openmp_wait(char** argv);

// Sets LibTorch's intra-op threads: `requested` when > 0, otherwise every hardware thread. Returns the count.
int configure_threads(int requested = 0);

// A recipe's `threads` (> 0) replaces the default of configure_threads() — but not a count the user named
// (--threads). Returns the threads in use.
int apply_recipe_threads(int recipe_threads);

}  // namespace hedgelab
