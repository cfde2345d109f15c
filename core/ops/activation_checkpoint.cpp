#include "core/ops/activation_checkpoint.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <torch/autograd.h>
#include <torch/csrc/autograd/autograd.h>

#include "core/ops/autocast.h"

namespace hedgelab::ops {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// What the backward needs besides tensors: the block and the autocast setting of the forward. It travels in
// the context's saved data as a capsule (the only non-tensor, non-scalar value saved_data holds).
struct Recompute : torch::CustomClassHolder {
  BlockFn fn;
  AutocastSetting autocast;
  bool input_requires_grad = false;
};

struct CheckpointFunction : public torch::autograd::Function<CheckpointFunction> {
  // `anchor` is an empty tensor that requires grad when x does not: without it a block fed a constant input
  // (stage 1's teacher activations) would produce an output outside the graph, and its parameters would
  // never get gradients.
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& anchor,
                               c10::intrusive_ptr<Recompute> recompute) {
    ctx->save_for_backward({x});
    ctx->saved_data["recompute"] = at::IValue::make_capsule(recompute);
    return {recompute->fn(x)};  // autograd records nothing inside a Function's forward
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto recompute = c10::static_intrusive_pointer_cast<Recompute>(ctx->saved_data["recompute"].toCapsule());
    at::Tensor x = ctx->get_saved_variables()[0].detach();
    x.requires_grad_(recompute->input_requires_grad);
    at::Tensor y;
    {
      at::AutoGradMode grad_on(true);
      AutocastScope autocast(recompute->autocast);
      y = recompute->fn(x);
    }
    if (y.requires_grad() && grads[0].defined())
      torch::autograd::backward({y}, {grads[0]});  // parameters' .grad accumulate here
    return {recompute->input_requires_grad ? x.grad() : at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor checkpointed(const BlockFn& fn, const at::Tensor& x) {
  if (!at::GradMode::is_enabled()) return fn(x);
  auto recompute = c10::make_intrusive<Recompute>();
  recompute->fn = fn;
  recompute->autocast = cuda_autocast_setting();
  recompute->input_requires_grad = x.requires_grad();
  const at::Tensor anchor = at::empty({0}, x.options().dtype(at::kFloat)).requires_grad_(!x.requires_grad());
  return CheckpointFunction::apply(x, anchor, recompute)[0];
}

}  // namespace hedgelab::ops
