// The distillation recipe as one plain value: what teacher and corpus, how big the batches, which student
// options, and the two stages' budgets and optimiser settings (docs/method.md §3–§5; every field, its range
// and default in docs/presets.md). Torch-free: the views and the run panel include it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/train/lr_schedule.h"

namespace hedgelab::distill {

struct DataConfig {
  int64_t context = 128;           // T: tokens per training window (windows hold T+1)
  int64_t batch_size = 8;          // B per micro-batch
  int64_t accumulation = 1;        // micro-batches per optimizer step
  double heldout_fraction = 0.05;  // share of the corpus kept out of training, for perplexity
  int64_t eval_every = 50;         // steps between held-out evaluations
  int64_t eval_windows = 16;       // held-out windows of T+1 tokens per evaluation
  int64_t probe_every = 50;        // steps between probe snapshots (§7); 0 = never
  std::string probe_text = "In the beginning God created the heaven and the earth.";
  int64_t checkpoint_every = 200;  // steps between resumable checkpoints of a session; 0 = only on pause/stop
};

// The student's mixer (§3 feature maps, §4 HedgeMamba options).
struct ModelConfig {
  std::string feature_map = "per_half_softmax";  // per_half_softmax | joint_softmax | raw_exp
  int64_t feature_dim = 0;                       // m per half; 0 = the head size P (identity init)
  int64_t chunk = 64;                            // L of the chunked scan / linear attention
  bool rotary = true;                            // rotary on the mixer's q and k
  int64_t conv_width = 4;                        // depthwise causal conv taps
  std::string normalization = "denominator";     // denominator | gated_rmsnorm
  bool gate = true;                              // y ⊙ g(z)
  bool conv = true;                              // the conv1d on x, k, q
  bool selective_decay = true;                   // α_t = exp(Δ_t A_h); off = α ≡ 1
  double eps = 1e-6;                             // ε of the denominator / RMSNorm
};

struct Stage1Config {
  int64_t tokens = 327680;        // budget; 0 skips stage 1
  double lr = 1e-2;               // peak
  double min_lr = 1e-3;           // end of the cosine
  int64_t warmup_steps = 20;      // clamped to the stage's steps
  double weight_decay = 0.0;      // AdamW, on ≥2-D tensors only
  double grad_clip = 1.0;         // global norm; 0 = off
  double attn_weight_loss = 0.0;  // λ_attn of L₁
  std::vector<std::string> trainable = {"feature_maps", "output_gain"};
};

struct Stage2Config {
  int64_t tokens = 1572864;
  double lr = 1e-3;
  double min_lr = 1e-4;
  int64_t warmup_steps = 100;
  double weight_decay = 0.01;
  double grad_clip = 1.0;
  double ce_weight = 1.0;             // λ_ce
  double kd_weight = 1.0;             // λ_kd
  double kd_temperature = 2.0;        // τ
  double align_weight = 0.0;          // λ_align, per-layer cosine
  std::string kd_target = "teacher";  // teacher | stage1
};

// Which runs `--compare` executes (§5).
struct ComparisonConfig {
  std::vector<std::string> runs = {"teacher", "hedgehog", "direct", "hedgemamba"};
  std::vector<std::string> ablations;  // no_gate, no_conv, no_selective_decay, split_10_90, …
};

struct RecipeConfig {
  std::string name = "custom";
  std::string description;
  std::string teacher = "demo";    // a Hugging Face folder, or "demo" for the embedded demo teacher
  std::string corpus = "default";  // a file/folder, or "default" for the KJV text
  int64_t seed = 0;
  std::string device = "cpu";     // cpu | cuda
  std::string dtype = "float32";  // float32 | bfloat16 (cuda only: bf16 autocast, float32 weights and losses)
  int64_t threads = 0;            // CPU threads; 0 = the library's choice
  bool activation_checkpointing = false;  // recompute each block in the backward instead of keeping it
  DataConfig data;
  ModelConfig model;
  Stage1Config stage1;
  Stage2Config stage2;
  ComparisonConfig comparison;

  // Reads a recipe; missing keys keep their defaults, unknown keys and values out of range are refused with
  // an Error "<source>: <json path>: expected …, got …".
  static RecipeConfig from_json(const nlohmann::json& j, const std::string& source);
  nlohmann::json to_json() const;
  void validate(const std::string& source = "recipe") const;

  int64_t tokens_per_step() const;  // B · accumulation · T
  int64_t stage1_steps() const;
  int64_t stage2_steps() const;
  train::WarmupCosine stage1_schedule() const;  // warmup clamped to the stage's steps
  train::WarmupCosine stage2_schedule() const;

  // One paragraph for --help and the run panel's tooltip.
  std::string describe() const;
};

// ceil(tokens / (batch · accumulation · context)); 0 tokens → 0 steps.
int64_t steps_for_tokens(int64_t tokens, const DataConfig& data);

// The valid values of each list/choice field, for --help and the GUI's combo boxes.
const std::vector<std::string>& valid_runs();
const std::vector<std::string>& valid_ablations();
const std::vector<std::string>& valid_trainable();

// A preset name ("demo") looked up in resources_dir()/presets, or a path to a .json file. An unknown name is
// refused with the list of available presets.
RecipeConfig load_preset(const std::string& name_or_path);
std::vector<std::string> available_presets();  // sorted names, without ".json"

// Command-line style overrides as a partial recipe ({"stage1": {"tokens": 1000}}), merged key by key (a null
// resets the field to its default) and validated like a file; errors name `source` and the JSON path.
void apply_overrides(RecipeConfig& config, const nlohmann::json& overrides,
                     const std::string& source = "command line");

// The recipe of one §5 ablation: gate/conv/selective decay off, or the total token budget re-split S1:S2.
RecipeConfig with_ablation(const RecipeConfig& config, const std::string& ablation);

}  // namespace hedgelab::distill
