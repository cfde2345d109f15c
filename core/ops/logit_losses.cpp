#include "core/ops/logit_losses.h"

#include <atomic>

#include "core/common/env.h"
#include "core/ops/dispatch_tally.h"

namespace hedgelab::ops {

namespace {

std::atomic<LogitLossesFn> g_fused{nullptr};
// The default on CUDA since it was measured on an H100 (docs/results.md); HEDGELAB_FUSED_LOGIT_LOSSES=0
// keeps the ATen form.
std::atomic<bool> g_prefer_fused{env_switch("HEDGELAB_FUSED_LOGIT_LOSSES", /*default_on=*/true)};

void check_shapes(const at::Tensor& zs, const at::Tensor& zt, const at::Tensor& targets, double temperature) {
  TORCH_CHECK(zs.dim() >= 2 && zs.sizes() == zt.sizes(), "logit_losses: student logits ", zs.sizes(),
              " and teacher logits ", zt.sizes(), " must have one shape [..., V]");
  TORCH_CHECK(targets.dim() == zs.dim() - 1 && targets.sizes() == zs.sizes().slice(0, zs.dim() - 1),
              "logit_losses: targets must be the logits' shape without V, ",
              zs.sizes().slice(0, zs.dim() - 1), ", got ", targets.sizes());
  TORCH_CHECK(targets.scalar_type() == at::kLong, "logit_losses: targets must be int64, got ",
              targets.scalar_type());
  TORCH_CHECK(temperature > 0, "logit_losses: the temperature must be > 0, got ", temperature);
}

bool is_f32_or_bf16(const at::Tensor& t) {
  return t.scalar_type() == at::kFloat || t.scalar_type() == at::kBFloat16;
}

LogitLosses reference_checked(const at::Tensor& zs, const at::Tensor& zt, const at::Tensor& targets,
                              double temperature) {
  const int64_t V = zs.size(-1);
  const double tau = temperature;
  LogitLosses out;
  const at::Tensor zf = zs.to(at::kFloat).reshape({-1, V});    // [N, V], one cast for both terms
  out.ce = at::cross_entropy_loss(zf, targets.reshape({-1}));  // []
  const at::Tensor log_q = at::log_softmax(zf / tau, -1);      // [N, V]
  const at::Tensor log_p = at::log_softmax(zt.detach().to(at::kFloat).reshape({-1, V}) / tau, -1);  // [N, V]
  const at::Tensor kl = (log_p.exp() * (log_p - log_q)).sum(-1);                                    // [N]
  out.kd = tau * tau * kl.mean();                                                                   // []
  return out;
}

}  // namespace

void register_fused_logit_losses(LogitLossesFn fn) {
  g_fused.store(fn);
}
LogitLossesFn registered_fused_logit_losses() {
  return g_fused.load();
}
void set_prefer_fused_logit_losses(bool prefer) {
  g_prefer_fused.store(prefer);
}
bool prefer_fused_logit_losses() {
  return g_prefer_fused.load();
}

LogitLosses logit_losses_reference(const at::Tensor& student_logits, const at::Tensor& teacher_logits,
                                   const at::Tensor& targets, double temperature) {
  check_shapes(student_logits, teacher_logits, targets, temperature);
  return reference_checked(student_logits, teacher_logits, targets, temperature);
}

LogitLosses logit_losses(const at::Tensor& student_logits, const at::Tensor& teacher_logits,
                         const at::Tensor& targets, double temperature) {
  check_shapes(student_logits, teacher_logits, targets, temperature);
  const LogitLossesFn fused = g_fused.load();
  const at::Tensor &zs = student_logits, &zt = teacher_logits;
  if (fused && zs.is_cuda() &&
      take_fused("logit_losses", g_prefer_fused.load(),
                 zt.device() == zs.device() && targets.device() == zs.device() && is_f32_or_bf16(zs) &&
                     is_f32_or_bf16(zt) && zs.numel() > 0)) {
    const int64_t V = zs.size(-1);
    const auto rows = fused(zs.reshape({-1, V}), zt.detach().reshape({-1, V}), targets.reshape({-1}),
                            temperature);  // ce_n, KL_n [N]
    return {rows.first.mean(), temperature * temperature * rows.second.mean()};
  }
  return reference_checked(zs, zt, targets, temperature);
}

}  // namespace hedgelab::ops
