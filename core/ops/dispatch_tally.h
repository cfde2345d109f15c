// Which path core/ops' dispatch took, op by op: the fused CUDA kernel, or the ATen reference and why. A fused
// kernel that is registered but not taken on CUDA inputs is otherwise silent: the results are right, only
// slower (a bf16 den once sent every bf16 stage-2 read-out through ATen, unnoticed over several device
// calls; docs/results.md, 2026-12-07). Each op's dispatch asks take_fused() once per call where a kernel is
// registered and the input is a CUDA tensor; CPU runs and builds without cuda/ tally nothing. The benchmarks
// print the tally beside their times; the cuda tests require the recipe's ops to take their kernels.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace hedgelab::ops {

enum class KernelPath {
  kFused,        // the CUDA kernel ran
  kReference,    // HEDGELAB_REFERENCE_KERNELS / set_use_reference_scan forced the reference for every op
  kSwitchedOff,  // the op's own switch (HEDGELAB_FUSED_<OP>=0 or set_prefer_fused_<op>(false))
  kUnsupported,  // inputs the kernel does not take (a dtype, a device mix, a width, a gradient it lacks)
};

const char* kernel_path_name(KernelPath path);  // "fused", "reference", "switched off", "unsupported"

// The dispatch's decision for `op` (a string literal; it is kept): kReference when the reference is forced,
// else kSwitchedOff when `prefer` is false, else kUnsupported when `supported` is false, else kFused. Tallies
// the decision and returns whether it is kFused. Thread-safe.
bool take_fused(const char* op, bool prefer, bool supported);

struct DispatchCount {
  std::string op;
  KernelPath path = KernelPath::kFused;
  int64_t calls = 0;
};

// Every (op, path) tallied since the last reset, by op name then path.
std::vector<DispatchCount> dispatch_tally();
void reset_dispatch_tally();

// The counts one-line: "hedge_mamba_scan fused 32, mixer_output unsupported 16"; "none" when empty.
std::string describe_dispatch_tally(const std::vector<DispatchCount>& counts);
// Only the calls that did not take a registered kernel (any path but kFused); "" when there are none.
std::string describe_kernel_misses(const std::vector<DispatchCount>& counts);

}  // namespace hedgelab::ops
