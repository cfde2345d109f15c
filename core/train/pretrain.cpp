#include "core/train/pretrain.h"

#include <ATen/ATen.h>
#include <spdlog/spdlog.h>
#include <torch/nn/init.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adamw.h>

#include <chrono>
#include <cmath>
#include <nlohmann/json.hpp>

#include "core/common/error.h"
#include "core/io/tokenizer.h"
#include "core/train/lr_schedule.h"
#include "core/util/atomic_file.h"

namespace hedgelab::train {

using nlohmann::json;

json PretrainConfig::to_json() const {
  return {{"model", model.to_json()},
          {"context", context},
          {"batch_size", batch_size},
          {"accumulation", accumulation},
          {"steps", steps},
          {"lr", lr},
          {"min_lr", min_lr},
          {"warmup_steps", warmup_steps},
          {"weight_decay", weight_decay},
          {"beta1", beta1},
          {"beta2", beta2},
          {"grad_clip", grad_clip},
          {"eval_every", eval_every},
          {"seed", seed}};
}

void PretrainConfig::validate() const {
  auto at_least = [](const char* field, int64_t v, int64_t lo) {
    if (v < lo)
      throw Error(std::string("pretrain: ") + field,
                  "expected at least " + std::to_string(lo) + ", got " + std::to_string(v));
  };
  at_least("context", context, 2);
  at_least("batch_size", batch_size, 1);
  at_least("accumulation", accumulation, 1);
  at_least("steps", steps, 1);
  at_least("warmup_steps", warmup_steps, 0);
  at_least("eval_every", eval_every, 1);
  if (!(lr > 0) || !(min_lr >= 0) || min_lr > lr)
    throw Error("pretrain: lr", "expected 0 <= min_lr <= lr and lr > 0");
  if (!(grad_clip > 0)) throw Error("pretrain: grad_clip", "expected a positive number");
  if (!(weight_decay >= 0)) throw Error("pretrain: weight_decay", "expected a number >= 0");
  model.validate("pretrain: model");
}

void init_gpt_neox_weights(models::GptNeoXForCausalLM& model, uint64_t seed) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(seed);
  const double out_std = 0.02 / std::sqrt(2.0 * static_cast<double>(model->config().num_layers));
  for (auto& item : model->named_parameters()) {
    const std::string& name = item.key();
    at::Tensor p = item.value();
    if (name.find("layernorm") != std::string::npos || name.find("layer_norm") != std::string::npos) {
      p.fill_(name.size() >= 6 && name.compare(name.size() - 6, 6, "weight") == 0 ? 1.0 : 0.0);
    } else if (p.dim() == 1) {
      p.zero_();
    } else if (name.find("attention.dense") != std::string::npos ||
               name.find("dense_4h_to_h") != std::string::npos) {
      torch::nn::init::normal_(p, 0.0, out_std);
    } else {
      torch::nn::init::normal_(p, 0.0, 0.02);
    }
  }
}

namespace {

// Replaces `dir` with a freshly written checkpoint: written beside it, then swapped in by renames.
void save_best(models::GptNeoXForCausalLM& model, const io::Tokenizer& tok,
               const std::filesystem::path& dir) {
  const auto staging = dir.parent_path() / ("." + dir.filename().string() + ".staging");
  const auto old = dir.parent_path() / ("." + dir.filename().string() + ".old");
  std::error_code ec;
  std::filesystem::remove_all(staging, ec);
  models::save_gpt_neox(model, tok, staging);
  std::filesystem::remove_all(old, ec);
  if (std::filesystem::exists(dir)) std::filesystem::rename(dir, old);
  std::filesystem::rename(staging, dir);
  std::filesystem::remove_all(old, ec);
}

}  // namespace

PretrainResult pretrain(const PretrainConfig& config, PretrainData& data, const io::Tokenizer& tokenizer,
                        const std::filesystem::path& out_dir, const PretrainCallbacks& callbacks) {
  config.validate();
  if (!data.heldout_windows.defined() || data.heldout_windows.size(0) == 0)
    throw Error("pretrain: corpus",
                "has no held-out window of " + std::to_string(config.context + 1) + " tokens");
  std::error_code ec;
  std::filesystem::create_directories(out_dir.parent_path().empty() ? "." : out_dir.parent_path(), ec);
  if (ec) throw Error(out_dir.string(), "cannot create the parent folder: " + ec.message());

  models::GptNeoXForCausalLM model(config.model);
  init_gpt_neox_weights(model, config.seed);
  model->train();

  std::vector<at::Tensor> decay, no_decay;
  for (auto& p : model->parameters())
    (p.dim() >= 2 ? decay : no_decay).push_back(p);
  torch::optim::AdamWOptions base_options(config.lr);
  base_options.betas({config.beta1, config.beta2}).weight_decay(config.weight_decay);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, std::make_unique<torch::optim::AdamWOptions>(base_options));
  auto no_decay_options = std::make_unique<torch::optim::AdamWOptions>(base_options);
  no_decay_options->weight_decay(0.0);
  groups.emplace_back(no_decay, std::move(no_decay_options));
  torch::optim::AdamW optimizer(std::move(groups));
  const WarmupCosine schedule{config.lr, config.min_lr, config.warmup_steps, config.steps};

  PretrainResult result;
  result.best_perplexity = std::numeric_limits<double>::infinity();
  const int64_t V = config.model.vocab_size;
  const auto t_start = std::chrono::steady_clock::now();
  auto t_last = t_start;
  for (int64_t step = 0; step < config.steps; ++step) {
    if (callbacks.stop_requested && callbacks.stop_requested->load()) {
      result.stopped_early = true;
      break;
    }
    const double lr = schedule.at(step);
    for (auto& g : optimizer.param_groups())
      static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
    optimizer.zero_grad();
    double loss_sum = 0.0;
    int64_t tokens = 0;
    for (int64_t micro = 0; micro < config.accumulation; ++micro) {
      at::Tensor batch = data.next_batch();  // [B, T+1]
      const int64_t T = batch.size(1) - 1;
      at::Tensor logits = model->forward(batch.narrow(1, 0, T)).logits;  // [B, T, V]
      at::Tensor loss = at::cross_entropy_loss(logits.reshape({-1, V}), batch.narrow(1, 1, T).reshape({-1}));
      const double value = loss.item<double>();
      if (!std::isfinite(value))
        throw Error("pretrain step " + std::to_string(step),
                    "the loss is " + std::to_string(value) + "; lower --lr");
      (loss / static_cast<double>(config.accumulation)).backward();
      loss_sum += value;
      tokens += batch.size(0) * T;
    }
    const double grad_norm = torch::nn::utils::clip_grad_norm_(model->parameters(), config.grad_clip);
    if (!std::isfinite(grad_norm))
      throw Error("pretrain step " + std::to_string(step), "the gradient norm is not finite; lower --lr");
    optimizer.step();
    result.tokens_seen += tokens;
    result.steps_done = step + 1;
    const auto now = std::chrono::steady_clock::now();
    PretrainStep info;
    info.step = step + 1;
    info.total_steps = config.steps;
    info.loss = loss_sum / static_cast<double>(config.accumulation);
    info.lr = lr;
    info.grad_norm = grad_norm;
    info.tokens_seen = result.tokens_seen;
    info.tokens_per_second =
        static_cast<double>(tokens) / std::max(1e-9, std::chrono::duration<double>(now - t_last).count());
    t_last = now;
    if (callbacks.on_step) callbacks.on_step(info);

    if ((step + 1) % config.eval_every == 0 || step + 1 == config.steps) {
      model->eval();
      const auto ppl = models::perplexity(model, data.heldout_windows, config.batch_size);
      model->train();
      PretrainEval ev;
      ev.step = step + 1;
      ev.heldout_perplexity = ppl.perplexity;
      if (ppl.perplexity < result.best_perplexity) {
        result.best_perplexity = ppl.perplexity;
        result.best_step = step + 1;
        save_best(model, tokenizer, out_dir);
        ev.saved = true;
      }
      ev.best_perplexity = result.best_perplexity;
      if (callbacks.on_eval) callbacks.on_eval(ev);
      t_last = std::chrono::steady_clock::now();  // evaluation time is not training throughput
    }
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  if (result.best_step > 0) {
    json record = {{"config", config.to_json()},
                   {"best_heldout_perplexity", result.best_perplexity},
                   {"best_step", result.best_step},
                   {"steps_done", result.steps_done},
                   {"tokens_seen", result.tokens_seen},
                   {"seconds", result.seconds},
                   {"heldout_windows", data.heldout_windows.size(0)}};
    util::write_file_atomically(out_dir / "pretrain.json", record.dump(2) + "\n");
  }
  return result;
}

}  // namespace hedgelab::train
