#include "core/distill/adamw.h"

#include <ATen/ATen.h>
#include <torch/version.h>

#include <atomic>
#include <cmath>
#include <map>
#include <tuple>

#include "core/common/env.h"

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
#define HEDGELAB_HAS_FUSED_ADAMW 1
#include <ATen/ops/_fused_adamw.h>
#else
#define HEDGELAB_HAS_FUSED_ADAMW 0
#endif

namespace hedgelab::distill {

namespace {

std::atomic<bool> g_prefer_fused{env_switch("HEDGELAB_FUSED_ADAMW", /*default_on=*/true)};

#if HEDGELAB_HAS_FUSED_ADAMW
// What the fused kernel demands of one launch's lists (ATen's fast-path restrictions): one device and dtype,
// every tensor dense and non-overlapping, and grad and moments laid out like the param.
bool fused_can_take(const AdamWSlot& s) {
  const at::Tensor& p = s.param;
  if (!p.is_cuda() || p.numel() == 0) return false;
  const auto dt = p.scalar_type();
  if (dt != at::kFloat && dt != at::kBFloat16 && dt != at::kHalf) return false;
  if (!p.is_non_overlapping_and_dense()) return false;
  for (const at::Tensor* t : {&s.grad, &s.exp_avg, &s.exp_avg_sq})
    if (!t->defined() || t->scalar_type() != dt || t->device() != p.device() || t->strides() != p.strides() ||
        t->sizes() != p.sizes())
      return false;
  return s.step >= 1 && s.step < (int64_t{1} << 24);  // the kernel reads t as a float32
}
#endif

}  // namespace

void adamw_update_reference(const std::vector<AdamWSlot>& slots, const AdamWConfig& o, double lr) {
  for (const AdamWSlot& s : slots) {
    const double bias1 = 1.0 - std::pow(o.beta1, static_cast<double>(s.step));
    const double bias2 = 1.0 - std::pow(o.beta2, static_cast<double>(s.step));
    at::Tensor p = s.param;
    at::Tensor m = s.exp_avg;
    at::Tensor v = s.exp_avg_sq;
    if (o.weight_decay != 0.0 && s.decay) p.mul_(1.0 - lr * o.weight_decay);
    m.mul_(o.beta1).add_(s.grad, 1.0 - o.beta1);
    v.mul_(o.beta2).addcmul_(s.grad, s.grad, 1.0 - o.beta2);
    const at::Tensor denom = (v.sqrt() / std::sqrt(bias2)).add_(o.eps);
    p.addcdiv_(m, denom, -lr / bias1);
  }
}

int64_t adamw_update_fused(const std::vector<AdamWSlot>& slots, const AdamWConfig& o, double lr,
                           std::vector<bool>& taken) {
  taken.assign(slots.size(), false);
#if HEDGELAB_HAS_FUSED_ADAMW
  // Launch groups: (device, dtype, decays). Each is one call, which ATen splits into chunks of tensors.
  using Key = std::tuple<int, int, bool>;
  std::map<Key, std::vector<size_t>> groups;
  for (size_t i = 0; i < slots.size(); ++i)
    if (fused_can_take(slots[i]))
      groups[{slots[i].param.get_device(), static_cast<int>(slots[i].param.scalar_type()), slots[i].decay}]
          .push_back(i);
  int64_t count = 0;
  for (const auto& [key, members] : groups) {
    const size_t n = members.size();
    std::vector<at::Tensor> params, grads, exp_avgs, exp_avg_sqs;
    params.reserve(n);
    grads.reserve(n);
    exp_avgs.reserve(n);
    exp_avg_sqs.reserve(n);
    at::Tensor steps_host = at::empty({static_cast<int64_t>(n)}, at::kFloat);  // t per slot, float32
    float* t = steps_host.data_ptr<float>();
    for (size_t k = 0; k < n; ++k) {
      const AdamWSlot& s = slots[members[k]];
      params.push_back(s.param);
      grads.push_back(s.grad);
      exp_avgs.push_back(s.exp_avg);
      exp_avg_sqs.push_back(s.exp_avg_sq);
      t[k] = static_cast<float>(s.step);
    }
    // One small copy; the kernel reads each slot's t through its own 0-d view.
    const std::vector<at::Tensor> steps = steps_host.to(params.front().device()).unbind(0);
    const double decay = std::get<2>(key) ? o.weight_decay : 0.0;
    at::_fused_adamw_(params, grads, exp_avgs, exp_avg_sqs, /*max_exp_avg_sqs=*/{}, steps, lr, o.beta1,
                      o.beta2, decay, o.eps, /*amsgrad=*/false, /*maximize=*/false);
    for (size_t i : members)
      taken[i] = true;
    count += static_cast<int64_t>(n);
  }
  return count;
#else
  (void)o;
  (void)lr;
  return 0;
#endif
}

void adamw_update(const std::vector<AdamWSlot>& slots, const AdamWConfig& config, double lr) {
  if (!g_prefer_fused.load() || !fused_adamw_compiled()) return adamw_update_reference(slots, config, lr);
  std::vector<bool> taken;
  if (adamw_update_fused(slots, config, lr, taken) == static_cast<int64_t>(slots.size())) return;
  std::vector<AdamWSlot> rest;
  for (size_t i = 0; i < slots.size(); ++i)
    if (!taken[i]) rest.push_back(slots[i]);
  adamw_update_reference(rest, config, lr);
}

bool fused_adamw_compiled() {
  return HEDGELAB_HAS_FUSED_ADAMW != 0;
}
void set_prefer_fused_adamw(bool prefer) {
  g_prefer_fused.store(prefer);
}
bool prefer_fused_adamw() {
  return g_prefer_fused.load();
}

}  // namespace hedgelab::distill
