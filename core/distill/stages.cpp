#include "core/distill/stages.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <ATen/record_function.h>
#include <spdlog/spdlog.h>
#include <torch/cuda.h>

#include <algorithm>
#include <optional>
#include <string>
#include <tuple>
#include <utility>

#include "core/common/env.h"
#include "core/common/error.h"
#include "core/distill/losses.h"
#include "core/ops/activation_checkpoint.h"
#include "core/ops/hedge_mamba_scan.h"
#include "core/ops/hedgehog_feature_map.h"
#include "core/ops/logit_losses.h"

namespace hedgelab::distill {

at::Device run_device(const RecipeConfig& recipe) {
  if (recipe.device == "cpu") return at::Device(at::kCPU);
  if (recipe.device != "cuda")
    throw Error(recipe.name + ": device", "expected \"cpu\" or \"cuda\", got \"" + recipe.device + "\"");
  if (!torch::cuda::is_available())
    throw Error(recipe.name + ": device",
                "\"cuda\" but this LibTorch " +
                    std::string(at::hasCUDA() ? "sees no CUDA device" : "was built without CUDA") +
                    "; use \"cpu\" or run the GPU build");
  return at::Device(at::kCUDA, 0);
}

ops::AutocastSetting autocast_of(const RecipeConfig& recipe) {
  ops::AutocastSetting s;
  s.enabled = recipe.device == "cuda" && recipe.dtype == "bfloat16";
  s.dtype = at::kBFloat16;
  return s;
}

at::Tensor prepare_run(const RecipeConfig& recipe, models::GptNeoXForCausalLM& teacher,
                       const data::TokenCorpus& corpus, int64_t max_windows) {
  recipe.validate(recipe.name);
  const at::Device device = run_device(recipe);
  if (device.is_cuda() && !ops::registered_fused_scan())
    spdlog::warn("{}: no fused CUDA kernels in this build; the scan runs as chunked ATen ops", recipe.name);
  const int64_t T = recipe.data.context;
  if (T > teacher->config().max_position_embeddings)
    spdlog::warn("data.context {} exceeds the teacher's max_position_embeddings {}", T,
                 teacher->config().max_position_embeddings);
  corpus.train().require_tokens(recipe.data.batch_size * T + 1, "one training batch of the recipe");
  const auto heldout = corpus.heldout();
  heldout.require_tokens(T + 1, "one evaluation window of " + std::to_string(T + 1) + " tokens");
  auto starts = data::eval_window_starts(heldout.size(), T);
  if (static_cast<int64_t>(starts.size()) > max_windows) starts.resize(static_cast<size_t>(max_windows));
  teacher->to(
      device);  // every model built from it starts there (float32: the frozen teacher runs autocast too)
  teacher->eval();
  set_all_trainable(*teacher, false);
  return data::eval_batch(heldout, T, starts).to(device);  // [N, T+1]
}

models::MixerOptions mixer_options(const RecipeConfig& r) {
  models::MixerOptions o;
  o.feature_map = ops::feature_map_kind_from_string(r.model.feature_map, "model.feature_map");
  o.feature_dim = r.model.feature_dim;
  o.chunk = r.model.chunk;
  o.rotary = r.model.rotary;
  o.conv_width = r.model.conv_width;
  o.normalization = models::mixer_normalization_from_string(r.model.normalization, "model.normalization");
  o.gate = r.model.gate;
  o.conv = r.model.conv;
  o.selective_decay = r.model.selective_decay;
  o.eps = r.model.eps;
  return o;
}

models::HedgehogOptions hedgehog_options(const RecipeConfig& r) {
  models::HedgehogOptions o;
  o.kind = ops::feature_map_kind_from_string(r.model.feature_map, "model.feature_map");
  o.feature_dim = r.model.feature_dim;
  o.chunk = r.model.chunk;
  o.eps = r.model.eps;
  return o;
}

models::HedgehogLM make_stage1_model(const models::GptNeoXForCausalLM& teacher, const RecipeConfig& recipe) {
  models::HedgehogLM hh(teacher, hedgehog_options(recipe));
  // The recipe names "mlp" and "norms" separately; the model trains them as one group.
  std::vector<std::string> groups;
  for (const auto& name : recipe.stage1.trainable)
    groups.push_back(name == "mlp" || name == "norms" ? "mlp_and_norms" : name);
  hh->set_trainable(models::Stage1Trainable::from_names(groups, "stage1.trainable"));
  return hh;
}

models::HedgeMambaStudent make_student(const models::HedgehogLM& stage1, const RecipeConfig& recipe) {
  models::HedgeMambaStudent student =
      models::HedgeMambaStudentImpl::from_stage1(stage1, mixer_options(recipe));
  student->set_activation_checkpointing(recipe.activation_checkpointing);
  return student;
}

NamedTensors trainable_parameters(torch::nn::Module& module) {
  NamedTensors out;
  for (auto& item : module.named_parameters())
    if (item.value().requires_grad()) out.emplace_back(item.key(), item.value());
  return out;
}

void set_all_trainable(torch::nn::Module& module, bool on) {
  for (auto& p : module.parameters())
    p.set_requires_grad(on);
}

TrainerConfig stage_trainer_config(double weight_decay, const train::WarmupCosine& schedule, double grad_clip,
                                   const DataConfig& data, int64_t steps) {
  TrainerConfig c;
  c.adamw.weight_decay = weight_decay;
  c.schedule = schedule;
  c.grad_clip = grad_clip;
  c.accumulation = data.accumulation;
  c.total_steps = steps;
  c.eval_every = data.eval_every;
  c.out_of_memory_hint = "lower data.batch_size (now " + std::to_string(data.batch_size) +
                         " windows a micro-batch) and raise data.accumulation by the same factor, or turn on "
                         "activation_checkpointing, then resume";
  return c;
}

StepFunction stage1_step(const RecipeConfig& recipe, models::GptNeoXForCausalLM teacher,
                         models::HedgehogLM hh, data::BatchCursor& cursor) {
  const int64_t T = recipe.data.context, L = teacher->config().num_layers;
  const double lambda_attn = recipe.stage1.attn_weight_loss;
  const ops::AutocastSetting autocast = autocast_of(recipe);
  // λ_attn needs each layer's weights from the forward, which a recomputed layer does not keep.
  const bool recompute = recipe.activation_checkpointing && lambda_attn == 0;
  // With q/k/v frozen (the default) the student's rotated q, k, v are the teacher's: take them from the
  // teacher's forward instead of projecting and rotating ln1(x) again. HEDGELAB_STAGE1_RECOMPUTE_QKV=1 keeps
  // the recomputation (the reference form, for checks and benchmarks).
  const bool reuse_qkv = !env_switch("HEDGELAB_STAGE1_RECOMPUTE_QKV", /*default_on=*/false) &&
                         hh->shares_frozen_qkv_with(*teacher);
  const at::Device device = teacher->lm_head_weight().device();
  return [=, &cursor](int64_t, int64_t) mutable {
    at::Tensor ids = cursor.next().narrow(1, 0, T).to(device);  // [B, T]
    const ops::AutocastScope scope(autocast);
    models::TeacherOutput t;
    {
      RECORD_USER_SCOPE("hedgelab::teacher_forward");  // names for a profiler (no cost without one)
      at::NoGradGuard no_grad;
      models::TeacherCaptureOptions capture;
      capture.attention_io = true;
      capture.attention_probs = lambda_attn > 0;
      capture.attention_qkv = reuse_qkv;
      capture.logits = false;  // stage 1 matches attention outputs only
      t = teacher->forward(ids, capture);
    }
    if (reuse_qkv) t.attn_input.clear();  // not needed: frees L × [B, T, d]
    RECORD_USER_SCOPE("hedgelab::student_forward");
    LossParts parts;
    for (int64_t l = 0; l < L; ++l) {
      at::Tensor weights;
      at::Tensor* weights_out = lambda_attn > 0 ? &weights : nullptr;
      at::Tensor o_s;  // [B, T, d]
      if (reuse_qkv) {
        const models::RotatedQkv qkv = t.attn_qkv[l];  // each [B, H, T, P], constants (no grad)
        if (recompute)
          o_s = ops::checkpointed(
              [hh, l, qkv](const at::Tensor& q) {
                return hh->attention_output_from_qkv(l, {q, qkv.k, qkv.v});
              },
              qkv.q);
        else
          o_s = hh->attention_output_from_qkv(l, qkv, lambda_attn > 0, weights_out);
      } else if (recompute) {
        o_s = ops::checkpointed(
            [hh, l](const at::Tensor& x) { return hh->teacher_forced_attention_output(l, x); },
            t.attn_input[l]);
      } else {
        o_s = hh->teacher_forced_attention_output(l, t.attn_input[l], lambda_attn > 0, weights_out);
      }
      parts.add("cosine.layers." + std::to_string(l), cosine_alignment_loss(o_s, t.attn_output[l]), 1.0 / L);
      if (lambda_attn > 0)
        parts.add("attn_ce.layers." + std::to_string(l),
                  attention_weight_cross_entropy(t.attn_probs[l], weights), lambda_attn / L);
    }
    parts.tokens = ids.numel();
    return parts;
  };
}

Stage2Model stage2_model_of(models::HedgeMambaStudent student) {
  Stage2Model m;
  m.logits = [student](const at::Tensor& ids) mutable { return student->forward(ids); };
  m.logits_and_layer_outputs = [student](const at::Tensor& ids) mutable {
    models::StudentCaptureOptions c;
    c.mixer_io = true;
    models::StudentOutput out = student->forward_with(ids, c);
    return std::make_pair(out.logits, std::move(out.mixer_output));
  };
  set_all_trainable(*student, true);
  m.parameters = trainable_parameters(*student);
  m.set_training = [student](bool on) mutable { student->train(on); };
  return m;
}

Stage2Model stage2_model_of(models::HedgehogLM model) {
  Stage2Model m;
  m.logits = [model](const at::Tensor& ids) mutable { return model->forward(ids); };
  m.logits_and_layer_outputs = [model](const at::Tensor& ids) mutable {
    models::HedgehogCaptureOptions c;
    c.attention_io = true;
    models::HedgehogOutput out = model->forward_with(ids, c);
    return std::make_pair(out.logits, std::move(out.attn_output));
  };
  set_all_trainable(*model, true);
  m.parameters = trainable_parameters(*model);
  m.set_training = [model](bool on) mutable { model->train(on); };
  return m;
}

Stage2Weights Stage2Weights::of(const Stage2Config& s2) {
  return {s2.ce_weight, s2.kd_weight, s2.align_weight, s2.kd_temperature};
}

StepFunction stage2_step(const RecipeConfig& recipe, models::GptNeoXForCausalLM teacher, Stage2Model model,
                         const models::HedgehogLM* kd_stage1, data::BatchCursor& cursor,
                         std::shared_ptr<const Stage2Weights> weights) {
  const int64_t T = recipe.data.context, L = teacher->config().num_layers;
  if (!weights) weights = std::make_shared<const Stage2Weights>(Stage2Weights::of(recipe.stage2));
  std::optional<models::HedgehogLM> kd_model;
  if (kd_stage1) kd_model = *kd_stage1;  // a second handle: forward() is not const
  const ops::AutocastSetting autocast = autocast_of(recipe);
  const at::Device device = teacher->lm_head_weight().device();
  return [=, &cursor](int64_t, int64_t) mutable {
    const Stage2Weights w = *weights;  // this step's
    const bool align = w.align_weight > 0;
    const ops::AutocastScope scope(autocast);
    at::Tensor batch = cursor.next().to(device);  // [B, T+1]
    at::Tensor ids = batch.narrow(1, 0, T);       // [B, T]
    at::Tensor targets = batch.narrow(1, 1, T);   // [B, T]
    models::TeacherOutput t;
    at::Tensor kd_logits;
    {
      RECORD_USER_SCOPE("hedgelab::teacher_forward");  // names for a profiler (no cost without one)
      at::NoGradGuard no_grad;
      t = teacher->forward(ids, {align, false});
      kd_logits = kd_model ? (*kd_model)->forward(ids) : t.logits;  // [B, T, V]
    }
    RECORD_USER_SCOPE("hedgelab::student_forward");
    at::Tensor logits;             // [B, T, V]
    std::vector<at::Tensor> outs;  // per layer [B, T, d], with λ_align
    if (align)
      std::tie(logits, outs) = model.logits_and_layer_outputs(ids);
    else
      logits = model.logits(ids);
    LossParts parts;
    const ops::LogitLosses ll = ops::logit_losses(logits, kd_logits, targets, w.kd_temperature);
    parts.add("ce", ll.ce, w.ce_weight);
    parts.add("kd", ll.kd, w.kd_weight);
    if (align) {
      for (int64_t l = 0; l < L; ++l)
        parts.add("align.layers." + std::to_string(l), cosine_alignment_loss(outs[l], t.attn_output[l]),
                  w.align_weight / L);
    }
    parts.tokens = ids.numel();
    return parts;
  };
}

}  // namespace hedgelab::distill
