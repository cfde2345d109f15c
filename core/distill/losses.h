// The losses of the two stages (docs/method.md §3, §4), each a mean so that budgets and batch sizes do not
// change their scale. Shape symbols: docs/architecture.md, "Shapes".
#pragma once

#include <ATen/core/Tensor.h>

namespace hedgelab::distill {

// mean over tokens of 1 − cos(o_s, o_t): stage 1's output alignment of one layer. [B,T,d] × [B,T,d] → scalar.
at::Tensor cosine_alignment_loss(const at::Tensor& student, const at::Tensor& teacher);

// Hedgehog's attention-weight loss: mean over batch, heads and query rows t of −Σ_{s≤t} P_ts log ā_ts, with
// the teacher's softmax rows P and the student's linear-attention rows ā, both [B,H,T,T].
at::Tensor attention_weight_cross_entropy(const at::Tensor& teacher_probs, const at::Tensor& student_weights);

// Stage 2's CE and KD terms on the logits: core/ops/logit_losses.h (ops::logit_losses).

}  // namespace hedgelab::distill
