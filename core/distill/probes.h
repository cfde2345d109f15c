// The probes of docs/method.md §7, computed into the plain snapshot structs of core/snapshot: attention maps
// (teacher P beside the stage-1 Hedgehog ā or the mixer's implied attention) on a fixed probe text, the
// kernel approximation pairs, the learned feature maps, the Mamba internals, and per-layer cosine alignment
// on a fixed held-out batch, teacher-forced and free-running. The teacher's side is computed once. Shape
// symbols: docs/architecture.md, "Shapes" (Tp: tokens of the probe text).
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <string>
#include <vector>

#include "core/models/gpt_neox.h"
#include "core/models/hedgehog.h"
#include "core/models/student.h"
#include "core/snapshot/probe_snapshot.h"

namespace hedgelab::distill {

class Prober {
 public:
  // probe_ids [1, Tp] (the probe text; `tokens` its decoded pieces, one per id); align_ids [B, T] (held-out
  // windows for the alignment figures). The teacher is used read-only.
  Prober(models::GptNeoXForCausalLM teacher, at::Tensor probe_ids, std::vector<std::string> tokens,
         at::Tensor align_ids);

  // Maps: the stage-1 layer fed the teacher's ln1 input (teacher-forced), quadratic form.
  snapshot::ProbeSnapshot stage1(const models::HedgehogLM& model, const std::string& run, int64_t step,
                                 int64_t tokens_seen) const;
  // Maps and internals: each mixer fed the teacher's ln1 input; its implied attention as the student's map.
  snapshot::ProbeSnapshot stage2(const models::HedgeMambaStudent& student, const std::string& run,
                                 int64_t step, int64_t tokens_seen) const;

  int64_t probe_tokens() const { return probe_ids_.size(1); }

 private:
  snapshot::ProbeSnapshot start(const std::string& run, const std::string& stage, int64_t step,
                                int64_t tokens_seen) const;
  // Fills attention[ℓ·H + h] from the student's maps [1,H,Tp,Tp] and feature-space inner products
  // [1,H,Tp,Tp] (φ_q(q_t)ᵀφ_k(k_s), or C_tᵀB_s).
  void fill_attention(snapshot::ProbeSnapshot& s, int64_t layer, const at::Tensor& student_map,
                      const at::Tensor& feature_products) const;

  // Per layer: the model's attention/mixer output fed `x` = the teacher's ln1 input [B,T,d] → [B,T,d].
  using LayerOutputFromInput = std::function<at::Tensor(int64_t layer, const at::Tensor& x)>;
  // ids [B,T] → per layer the attention/mixer outputs of the model's own residual stream.
  using StreamOutputs = std::function<std::vector<at::Tensor>(const at::Tensor& ids)>;
  // Cosine alignment with the teacher on the held-out probe batch, teacher-forced and free-running.
  void fill_alignment(snapshot::ProbeSnapshot& s, const LayerOutputFromInput& teacher_forced,
                      const StreamOutputs& free_running) const;

  models::GptNeoXForCausalLM teacher_;
  at::Tensor probe_ids_;  // [1, Tp]
  std::vector<std::string> tokens_;
  at::Tensor align_ids_;                  // [B, T]
  std::vector<at::Tensor> probe_input_;   // per layer ln1(x) on the probe text [1, Tp, d]
  std::vector<at::Tensor> probe_probs_;   // per layer P [1, H, Tp, Tp]
  std::vector<at::Tensor> probe_logits_;  // per layer q·k/√P [1, H, Tp, Tp]
  std::vector<at::Tensor> align_input_;   // per layer ln1(x) on the alignment batch [B, T, d]
  std::vector<at::Tensor> align_output_;  // per layer attention output [B, T, d]
};

// Mean over positions of cos(a_t, b_t) for [B, T, d] tensors.
double mean_cosine(const at::Tensor& a, const at::Tensor& b);

}  // namespace hedgelab::distill
