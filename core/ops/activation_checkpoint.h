// Activation checkpointing (the recipe's `activation_checkpointing`, docs/presets.md): a block's forward runs
// without keeping its intermediate activations, and the backward runs it again, under the autocast setting
// the forward had, and back-propagates through that recomputation. Memory per block drops to its input;
// compute grows by one forward. Parameters used inside `fn` receive their gradients during the backward
// (accumulated into .grad, as loss.backward() does); the input's gradient flows on through the graph.
// `fn` must compute the same function both times (no dropout, no state updates).
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>

namespace hedgelab::ops {

using BlockFn = std::function<at::Tensor(const at::Tensor&)>;

// fn(x) with its activations recomputed in the backward. Outside grad mode it is simply fn(x).
at::Tensor checkpointed(const BlockFn& fn, const at::Tensor& x);

}  // namespace hedgelab::ops
