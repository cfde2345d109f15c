// The stage-2 student (docs/method.md §4): the teacher's skeleton (embeddings, LayerNorms, MLPs, LM head,
// residual mode) with a HedgeMamba mixer in place of every attention. Built from a stage-1 model (the recipe:
// fresh, it gives the stage-1 model's logits) or directly from the teacher with a standard Mamba random init
// (the "direct" baseline). Decodes token by token with O(1) state. Saved as a folder: docs/student-format.md.
// Shape symbols: docs/architecture.md, "Shapes".
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "core/models/gpt_neox.h"
#include "core/models/hedge_mamba.h"
#include "core/models/hedgehog.h"

namespace hedgelab::models {

// One block: GPT-NeoX's layer with `mixer` where `attention` was.
struct HedgeMambaLayerImpl : torch::nn::Module {
  HedgeMambaLayerImpl(const GptNeoXConfig& config, const MixerOptions& options);
  torch::nn::LayerNorm input_layernorm{nullptr};
  torch::nn::LayerNorm post_attention_layernorm{nullptr};
  HedgeMambaMixer mixer{nullptr};
  GptNeoXMlp mlp{nullptr};
};
TORCH_MODULE(HedgeMambaLayer);

// Decoding state of the whole student: one mixer state per layer, O(1) in the context length.
struct StudentState {
  std::vector<MixerState> layers;
  int64_t length = 0;  // tokens consumed
};

struct StudentCaptureOptions {
  bool mixer_io = false;     // per layer ln1(x) and the mixer output
  bool internals = false;    // per layer MixerCapture (Δ, α, gate, final state)
  MixerProbeOptions probes;  // with internals: state norms, implied attention
};

struct StudentOutput {
  at::Tensor logits;                     // [B, T, V]
  std::vector<at::Tensor> mixer_input;   // per layer [B, T, d] = ln1(x)
  std::vector<at::Tensor> mixer_output;  // per layer [B, T, d]
  std::vector<MixerCapture> internals;   // per layer
};

// How the student was initialised; recorded in config.json.
enum class StudentOrigin { kStage1, kDirect };

class HedgeMambaStudent;

class HedgeMambaStudentImpl : public torch::nn::Module {
 public:
  // A skeleton: default-initialised GPT-NeoX blocks and fresh mixers (for loading or tests).
  HedgeMambaStudentImpl(const GptNeoXConfig& config, const MixerOptions& options,
                        StudentOrigin origin = StudentOrigin::kStage1);

  // The recipe's stage-2 start. Feature map kind, m and ε are taken from the stage-1 model (the mixer must
  // compute stage 1 exactly); the rest of `options` is the mixer's. Built on stage 1's device.
  static HedgeMambaStudent from_stage1(const HedgehogLM& stage1, const MixerOptions& options);
  // The direct baseline: embeddings, MLPs, LayerNorms and head copied from the teacher, every mixer with
  // Mamba's standard random init drawn from `seed` (layer i from a stream derived from seed and i).
  static HedgeMambaStudent direct(const GptNeoXForCausalLM& teacher, const MixerOptions& options,
                                  uint64_t seed);

  const GptNeoXConfig& config() const { return config_; }
  const MixerOptions& options() const { return options_; }
  StudentOrigin origin() const { return origin_; }

  at::Tensor forward(const at::Tensor& ids);  // [B,T] → logits [B,T,V] (chunked scan)
  StudentOutput forward_with(const at::Tensor& ids, const StudentCaptureOptions& capture);
  // Parallel prefill that continues from and updates `state` (an empty state = the start): logits [B,T,V].
  at::Tensor forward(const at::Tensor& ids, StudentState& state);
  // One token per sequence: ids_t [B] → logits [B,V], advancing `state`.
  at::Tensor step(const at::Tensor& ids_t, StudentState& state);
  // Layer ℓ's mixer output [B,T,d] from a given ln1(x) [B,T,d] (teacher-forced alignment probes).
  at::Tensor teacher_forced_mixer_output(int64_t layer, const at::Tensor& mixer_input) const;

  HedgeMambaLayer layer(int64_t i) const { return layers->ptr<HedgeMambaLayerImpl>(i); }
  at::Tensor lm_head_weight() const;  // [V, d]

  // Training forwards (grad mode, no state, no capture) keep only each block's input and recompute the block
  // in the backward (ops/activation_checkpoint.h). Off by default; the recipe's activation_checkpointing.
  void set_activation_checkpointing(bool on) { activation_checkpointing_ = on; }
  bool activation_checkpointing() const { return activation_checkpointing_; }

  // Names mirror GPT-NeoX's: embed_in, layers.i.{input_layernorm,post_attention_layernorm,mixer,mlp},
  // final_layer_norm, embed_out (absent when tied).
  torch::nn::Embedding embed_in{nullptr};
  torch::nn::ModuleList layers{nullptr};
  torch::nn::LayerNorm final_layer_norm{nullptr};
  torch::nn::Linear embed_out{nullptr};

 private:
  at::Tensor run(const at::Tensor& ids, StudentState* state, const StudentCaptureOptions* capture,
                 StudentOutput* out);
  // Embeddings, LayerNorms, MLPs and head from `teacher` (or the stage-1 model's copy of it).
  void copy_skeleton(const GptNeoXForCausalLMImpl& teacher, const at::Tensor& head_weight);

  GptNeoXConfig config_;
  MixerOptions options_;
  StudentOrigin origin_ = StudentOrigin::kStage1;
  bool activation_checkpointing_ = false;
};
TORCH_MODULE(HedgeMambaStudent);

// Saves config.json (format, teacher config, mixer options, origin) and model.safetensors (float32, the
// named_parameters() names), each atomically, into `dir` (created when missing).
void save_student(const HedgeMambaStudent& student, const std::filesystem::path& dir);
// Loads a folder written by save_student; throws hedgelab::Error naming the file and field or tensor.
HedgeMambaStudent load_student(const std::filesystem::path& dir);

// Decodes with the recurrent path (prompt prefilled in parallel, then one step per token); the same options,
// seeded sampling and stop rule as the teacher's generate(). Returns only the new ids.
std::vector<int64_t> generate(HedgeMambaStudent& student, const std::vector<int64_t>& prompt,
                              const GenerationOptions& options,
                              const std::function<void(int64_t)>& on_token = {});

}  // namespace hedgelab::models
