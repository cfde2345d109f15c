// LibTorch starts with one intra-op thread on Debian's build; every entry point calls this once.
#pragma once

namespace hedgelab {

// Sets LibTorch's intra-op threads: `requested` when > 0, otherwise every hardware thread. Returns the count.
int configure_threads(int requested = 0);

}  // namespace hedgelab
