#include "core/distill/losses.h"

#include <ATen/ATen.h>

#include "core/ops/cosine_alignment.h"

namespace hedgelab::distill {

at::Tensor cosine_alignment_loss(const at::Tensor& student, const at::Tensor& teacher) {
  TORCH_CHECK(student.sizes() == teacher.sizes(), "cosine_alignment_loss: shapes differ");
  at::Tensor cos = ops::cosine_alignment(student, teacher);  // [B, T] float32
  return (1.0 - cos).mean();
}

at::Tensor attention_weight_cross_entropy(const at::Tensor& teacher_probs,
                                          const at::Tensor& student_weights) {
  TORCH_CHECK(teacher_probs.sizes() == student_weights.sizes(),
              "attention_weight_cross_entropy: shapes differ");
  // Above the diagonal P is 0, so those entries add nothing; the clamp keeps log finite where ā underflows.
  at::Tensor log_a = at::log(student_weights.to(at::kFloat).clamp_min(1e-12));  // [B, H, T, T]
  return -(teacher_probs.to(at::kFloat) * log_a).sum(-1).mean();
}

at::Tensor next_token_cross_entropy(const at::Tensor& logits, const at::Tensor& targets) {
  const int64_t V = logits.size(-1);
  return at::cross_entropy_loss(logits.to(at::kFloat).reshape({-1, V}), targets.reshape({-1}));
}

at::Tensor distillation_kl(const at::Tensor& teacher_logits, const at::Tensor& student_logits,
                           double temperature) {
  const int64_t V = student_logits.size(-1);
  at::Tensor log_q =
      at::log_softmax(student_logits.to(at::kFloat).reshape({-1, V}) / temperature, -1);  // [BT, V]
  at::Tensor log_p =
      at::log_softmax(teacher_logits.to(at::kFloat).reshape({-1, V}) / temperature, -1);  // [BT, V]
  at::Tensor kl = (log_p.exp() * (log_p - log_q)).sum(-1);                                // [BT]
  return temperature * temperature * kl.mean();
}

}  // namespace hedgelab::distill
