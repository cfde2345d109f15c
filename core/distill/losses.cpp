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

}  // namespace hedgelab::distill
