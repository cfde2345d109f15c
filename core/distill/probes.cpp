#include "core/distill/probes.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <cmath>

#include "core/common/error.h"
#include "core/snapshot/probe_stats.h"

namespace hedgelab::distill {

namespace {

// A 2-D tensor [R, C] as a Grid (float32, row-major).
snapshot::Grid to_grid(const at::Tensor& t) {
  TORCH_CHECK(t.dim() == 2, "to_grid: expected a 2-D tensor, got ", t.sizes());
  const at::Tensor c = t.detach().to(at::kCPU, at::kFloat).contiguous();
  snapshot::Grid g(c.size(0), c.size(1));
  std::copy(c.data_ptr<float>(), c.data_ptr<float>() + c.numel(), g.values.begin());
  return g;
}

std::vector<snapshot::Grid> per_head(const at::Tensor& t) {  // [H, R, C] → H grids
  std::vector<snapshot::Grid> out;
  for (int64_t h = 0; h < t.size(0); ++h)
    out.push_back(to_grid(t[h]));
  return out;
}

}  // namespace

double mean_cosine(const at::Tensor& a, const at::Tensor& b) {
  return at::cosine_similarity(a.to(at::kFloat), b.to(at::kFloat), -1, 1e-8).mean().item<double>();
}

Prober::Prober(models::GptNeoXForCausalLM teacher, at::Tensor probe_ids, std::vector<std::string> tokens,
               at::Tensor align_ids)
    : teacher_(std::move(teacher)),
      probe_ids_(std::move(probe_ids)),
      tokens_(std::move(tokens)),
      align_ids_(std::move(align_ids)) {
  if (probe_ids_.dim() != 2 || probe_ids_.size(0) != 1 || probe_ids_.size(1) < 1)
    throw Error("probe text", "expected at least one token");
  if (static_cast<int64_t>(tokens_.size()) != probe_ids_.size(1))
    throw Error("probe text", "one decoded piece per token expected");
  at::NoGradGuard no_grad;
  const int64_t P = teacher_->config().head_size();
  models::TeacherOutput t = teacher_->forward(probe_ids_, {true, true});
  probe_input_ = t.attn_input;
  probe_probs_ = t.attn_probs;
  for (size_t l = 0; l < probe_input_.size(); ++l) {
    const models::RotatedQkv qkv = teacher_->attention_qkv(static_cast<int64_t>(l), probe_input_[l]);
    probe_logits_.push_back(at::matmul(qkv.q, qkv.k.transpose(-1, -2)) /
                            std::sqrt(double(P)));  // [1,H,Tp,Tp]
  }
  if (align_ids_.defined() && align_ids_.numel() > 0) {
    models::TeacherOutput a = teacher_->forward(align_ids_, {true, false});
    align_input_ = a.attn_input;
    align_output_ = a.attn_output;
  }
}

snapshot::ProbeSnapshot Prober::start(const std::string& run, const std::string& stage, int64_t step,
                                      int64_t tokens_seen) const {
  snapshot::ProbeSnapshot s;
  s.run = run;
  s.stage = stage;
  s.step = step;
  s.tokens_seen = tokens_seen;
  s.layers = teacher_->config().num_layers;
  s.heads = teacher_->config().num_heads;
  s.tokens = tokens_;
  s.attention.resize(static_cast<size_t>(s.layers * s.heads));
  s.alignment.resize(static_cast<size_t>(s.layers));
  s.features.resize(static_cast<size_t>(s.layers));
  return s;
}

void Prober::fill_attention(snapshot::ProbeSnapshot& s, int64_t layer, const at::Tensor& student_map,
                            const at::Tensor& feature_products) const {
  const at::Tensor log_products = at::log(feature_products.clamp_min(1e-30));  // [1, H, Tp, Tp]
  for (int64_t h = 0; h < s.heads; ++h) {
    snapshot::HeadAttention& a = s.attention[static_cast<size_t>(layer * s.heads + h)];
    a.teacher = to_grid(probe_probs_[layer][0][h]);
    a.student = to_grid(student_map[0][h]);
    a.teacher_entropy = snapshot::mean_row_entropy(a.teacher);
    a.student_entropy = snapshot::mean_row_entropy(a.student);
    a.row_kl = snapshot::mean_row_kl(a.teacher, a.student);
    a.teacher_logits = snapshot::lower_triangle(to_grid(probe_logits_[layer][0][h]));
    a.feature_logits = snapshot::lower_triangle(to_grid(log_products[0][h]));
    a.spearman = snapshot::spearman(a.teacher_logits, a.feature_logits);
  }
}

void Prober::fill_alignment(snapshot::ProbeSnapshot& s, const LayerOutputFromInput& teacher_forced,
                            const StreamOutputs& free_running) const {
  if (align_input_.empty()) return;
  const std::vector<at::Tensor> free = free_running(align_ids_);  // per layer [B, T, d]
  for (int64_t l = 0; l < s.layers; ++l) {
    s.alignment[l].teacher_forced = mean_cosine(teacher_forced(l, align_input_[l]), align_output_[l]);
    s.alignment[l].free_running = mean_cosine(free[l], align_output_[l]);
  }
}

snapshot::ProbeSnapshot Prober::stage1(const models::HedgehogLM& model_in, const std::string& run,
                                       int64_t step, int64_t tokens_seen) const {
  at::NoGradGuard no_grad;
  models::HedgehogLM model = model_in;  // a second handle: forward_with() is not const
  snapshot::ProbeSnapshot s = start(run, "stage1", step, tokens_seen);
  for (int64_t l = 0; l < s.layers; ++l) {
    at::Tensor weights;  // ā [1, H, Tp, Tp]
    model->teacher_forced_attention_output(l, probe_input_[l], true, &weights);
    const models::RotatedQkv qkv = model->base()->attention_qkv(l, probe_input_[l]);
    const auto attention = model->attention(l);
    const at::Tensor fq = attention->feature_map_q->forward(qkv.q);  // [1, H, Tp, N]
    const at::Tensor fk = attention->feature_map_k->forward(qkv.k);  // [1, H, Tp, N]
    fill_attention(s, l, weights, at::matmul(fq, fk.transpose(-1, -2)));
    s.features[l].q = per_head(attention->feature_map_q->weight);  // H × [m, P]
    s.features[l].k = per_head(attention->feature_map_k->weight);
  }
  fill_alignment(
      s, [&](int64_t l, const at::Tensor& x) { return model->teacher_forced_attention_output(l, x); },
      [&](const at::Tensor& ids) {
        models::HedgehogCaptureOptions c;
        c.attention_io = true;
        return model->forward_with(ids, c).attn_output;
      });
  return s;
}

snapshot::ProbeSnapshot Prober::stage2(const models::HedgeMambaStudent& student_in, const std::string& run,
                                       int64_t step, int64_t tokens_seen) const {
  at::NoGradGuard no_grad;
  models::HedgeMambaStudent student = student_in;
  snapshot::ProbeSnapshot s = start(run, "stage2", step, tokens_seen);
  s.mixers.resize(static_cast<size_t>(s.layers));
  models::MixerProbeOptions probes;
  probes.state_norms = true;
  probes.implied_attention = true;
  for (int64_t l = 0; l < s.layers; ++l) {
    const auto mixer = student->layer(l)->mixer;
    models::MixerCapture cap;
    mixer->forward_with(probe_input_[l], probes, cap);
    fill_attention(s, l, cap.implied_attention, at::matmul(cap.features_q, cap.features_k.transpose(-1, -2)));
    s.features[l].q = per_head(mixer->feature_map_q->weight);
    s.features[l].k = per_head(mixer->feature_map_k->weight);
    snapshot::MixerInternals& m = s.mixers[l];
    m.delta = to_grid(cap.delta[0]);                        // [H, Tp]
    m.alpha = to_grid(cap.alpha[0]);                        // [H, Tp]
    if (cap.gate.defined()) m.gate = to_grid(cap.gate[0]);  // [Tp, d]
    m.state_norm = to_grid(cap.state_norms[0]);             // [H, Tp]
    m.final_state = per_head(cap.final_state[0]);           // H × [N, P]
    if (mixer->options().conv) {
      m.conv_x = to_grid(mixer->conv_x->weight);  // [d, W]
      m.conv_k = to_grid(mixer->conv_k->weight);
      m.conv_q = to_grid(mixer->conv_q->weight);
    }
  }
  fill_alignment(
      s, [&](int64_t l, const at::Tensor& x) { return student->teacher_forced_mixer_output(l, x); },
      [&](const at::Tensor& ids) {
        models::StudentCaptureOptions c;
        c.mixer_io = true;
        return student->forward_with(ids, c).mixer_output;
      });
  return s;
}

}  // namespace hedgelab::distill
