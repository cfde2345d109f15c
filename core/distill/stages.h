// The two stages' training steps as reusable pieces (docs/method.md §3–§4): what one micro-batch computes
// and how a model is evaluated, shared by the comparison runner (recipe_run) and the resumable run
// (core/run). Shape symbols: docs/architecture.md, "Shapes".
#pragma once

#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "core/data/batches.h"
#include "core/data/corpus.h"
#include "core/distill/recipe.h"
#include "core/distill/trainer.h"
#include "core/models/gpt_neox.h"
#include "core/models/hedge_mamba.h"
#include "core/models/hedgehog.h"
#include "core/models/student.h"
#include "core/ops/autocast.h"

namespace hedgelab::distill {

// The device a recipe runs on; Error naming `device` when it asks for CUDA and none is usable.
at::Device run_device(const RecipeConfig& recipe);
// bf16 CUDA autocast when the recipe says device "cuda" and dtype "bfloat16"; off otherwise.
ops::AutocastSetting autocast_of(const RecipeConfig& recipe);

// Validates a recipe for a run on `teacher` and `corpus` (device and dtype this build runs, a training batch
// and an evaluation window in the corpus) and returns the final-evaluation windows [N, T+1]: the held-out
// split's first windows of the §5 protocol, at most `max_windows`, on the recipe's device. Moves the teacher
// to that device (models built from it follow) and puts it in eval mode, frozen.
at::Tensor prepare_run(const RecipeConfig& recipe, models::GptNeoXForCausalLM& teacher,
                       const data::TokenCorpus& corpus, int64_t max_windows);

// The mixer and Hedgehog options a recipe asks for.
models::MixerOptions mixer_options(const RecipeConfig& recipe);
models::HedgehogOptions hedgehog_options(const RecipeConfig& recipe);

// A fresh stage-1 model on `teacher` with the recipe's trainable set switched on.
models::HedgehogLM make_stage1_model(const models::GptNeoXForCausalLM& teacher, const RecipeConfig& recipe);

// The stage-2 student initialised from stage 1 (§4), with the recipe's mixer options and activation
// checkpointing, on stage 1's device.
models::HedgeMambaStudent make_student(const models::HedgehogLM& stage1, const RecipeConfig& recipe);

// The requires_grad parameters of a module, by name.
NamedTensors trainable_parameters(torch::nn::Module& module);
void set_all_trainable(torch::nn::Module& module, bool on);

// Trainer settings of one stage: AdamW decay, schedule, clipping, the recipe's accumulation and eval
// interval.
TrainerConfig stage_trainer_config(double weight_decay, const train::WarmupCosine& schedule, double grad_clip,
                                   const DataConfig& data, int64_t steps);

// L₁ (§3) on the next batch of `cursor`: per layer, the cosine alignment of the stage-1 layer fed the
// teacher's ln1 input with the teacher's attention output, weight 1/L, plus λ_attn/L · attention CE.
StepFunction stage1_step(const RecipeConfig& recipe, models::GptNeoXForCausalLM teacher,
                         models::HedgehogLM model, data::BatchCursor& cursor);

// A model trained in stage 2 (the student, or the Hedgehog baseline), seen through functions.
struct Stage2Model {
  std::function<at::Tensor(const at::Tensor&)> logits;  // ids [B,T] → [B,T,V]
  // ids → the logits and, from the same forward, the per-layer attention/mixer outputs of the model's own
  // stream (for λ_align), [B,T,d] each (one forward: the logits' graph and the outputs' are one graph)
  std::function<std::pair<at::Tensor, std::vector<at::Tensor>>(const at::Tensor&)> logits_and_layer_outputs;
  NamedTensors parameters;
  std::function<void(bool)> set_training;
};
Stage2Model stage2_model_of(models::HedgeMambaStudent student);  // every parameter trainable
Stage2Model stage2_model_of(models::HedgehogLM model);           // every parameter trainable

// λ_ce, λ_kd, λ_align and τ of L₂ as the step reads them at every call: a run shares one with its step
// function and edits it between steps (live knobs).
struct Stage2Weights {
  double ce_weight = 1.0, kd_weight = 1.0, align_weight = 0.0, kd_temperature = 1.0;
  static Stage2Weights of(const Stage2Config& stage2);
};

// L₂ (§4) on the next batch of `cursor`: λ_ce · CE + λ_kd · τ²-KL to the teacher (or to `kd_stage1` when
// given) [+ λ_align/L · per-layer cosine alignment]. The weights are read from `weights` at every step when
// given, else fixed to the recipe's.
StepFunction stage2_step(const RecipeConfig& recipe, models::GptNeoXForCausalLM teacher, Stage2Model model,
                         const models::HedgehogLM* kd_stage1, data::BatchCursor& cursor,
                         std::shared_ptr<const Stage2Weights> weights = nullptr);

}  // namespace hedgelab::distill
