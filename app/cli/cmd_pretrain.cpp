// pretrain: train a GPT-NeoX-shaped teacher from scratch (how resources/demo-teacher was made).
#include <spdlog/spdlog.h>

#include <csignal>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "app/cli/args.h"
#include "app/cli/commands.h"
#include "app/cli/loading.h"
#include "core/common/error.h"
#include "core/data/batches.h"
#include "core/data/tokenizer_encoder.h"
#include "core/train/pretrain.h"
#include "core/util/progress.h"

namespace hedgelab::cli {

int run_pretrain(const Args& args) {
  ArgParser p(
      "pretrain",
      "Train a GPT-NeoX teacher from scratch on a corpus. AdamW with warmup + cosine, gradient clipping,\n"
      "held-out perplexity every --eval-every steps; the best checkpoint is kept in --out as a Hugging Face\n"
      "folder (config.json, model.safetensors, tokenizer.json). Ctrl+C stops after the current step.");
  p.required("out", "DIR", "where the best checkpoint goes")
      .option("corpus", "PATH", "text file/folder, .jsonl or .bin (default: data/kjv.txt)", "")
      .option("tokenizer", "byte|FILE", "'byte' (256 byte symbols + <|endoftext|>) or a tokenizer.json",
              "byte")
      .option("layers", "L", "transformer layers", "4")
      .option("hidden", "D", "model width d", "128")
      .option("heads", "H", "attention heads", "4")
      .option("intermediate", "F", "MLP width (default 4d)", "0")
      .option("rotary-pct", "X", "fraction of each head's channels rotated", "0.25")
      .option("rotary-base", "X", "rotary base", "10000")
      .flag("sequential-residual", "x + attn, then + mlp (default: Pythia's parallel residual)")
      .option("context", "T", "training window", "128")
      .option("batch", "B", "windows per micro-batch", "16")
      .option("accumulation", "K", "micro-batches per optimizer step", "1")
      .option("steps", "N", "optimizer steps", "2000")
      .option("lr", "X", "peak learning rate", "0.003")
      .option("min-lr", "X", "final learning rate", "0.0003")
      .option("warmup", "N", "warmup steps", "100")
      .option("weight-decay", "X", "AdamW weight decay (matrices only)", "0.1")
      .option("grad-clip", "X", "gradient norm clip", "1.0")
      .option("eval-every", "N", "steps between held-out evaluations", "200")
      .option("eval-windows", "N", "held-out windows per evaluation (0 = all)", "128")
      .option("seed", "S", "seed for initialisation and batch order", "0")
      .flag("no-cache", "tokenize again instead of reading the tokenization cache")
      .flag("json", "print the result as JSON");
  if (!p.parse(args)) return 0;

  const std::string tok_arg = p.str("tokenizer");
  io::Tokenizer tok =
      tok_arg == "byte" ? io::Tokenizer::byte_level_vocabulary() : io::Tokenizer::from_file(tok_arg);
  train::PretrainConfig cfg;
  cfg.model.vocab_size = static_cast<int64_t>(tok.vocab_size());
  cfg.model.hidden_size = p.integer("hidden", 1);
  cfg.model.num_layers = p.integer("layers", 1);
  cfg.model.num_heads = p.integer("heads", 1);
  cfg.model.intermediate_size = p.integer("intermediate", 0);
  if (cfg.model.intermediate_size == 0) cfg.model.intermediate_size = 4 * cfg.model.hidden_size;
  cfg.model.rotary_pct = p.number("rotary-pct");
  cfg.model.rotary_base = p.number("rotary-base");
  cfg.model.use_parallel_residual = !p.enabled("sequential-residual");
  cfg.context = p.integer("context", 2);
  cfg.model.max_position_embeddings = cfg.context;
  if (auto eos = tok.eos_id()) cfg.model.eos_token_id = cfg.model.bos_token_id = *eos;
  cfg.batch_size = p.integer("batch", 1);
  cfg.accumulation = p.integer("accumulation", 1);
  cfg.steps = p.integer("steps", 1);
  cfg.lr = p.number("lr");
  cfg.min_lr = p.number("min-lr");
  cfg.warmup_steps = p.integer("warmup", 0);
  cfg.weight_decay = p.number("weight-decay");
  cfg.grad_clip = p.number("grad-clip");
  cfg.eval_every = p.integer("eval-every", 1);
  cfg.seed = static_cast<uint64_t>(p.integer("seed", 0));
  cfg.validate();

  auto corpus = load_corpus_with(tok, p.str("corpus"), !p.enabled("no-cache"));
  corpus.train().require_tokens(cfg.batch_size * cfg.context + 1, "one training batch");
  data::BatchCursor cursor(corpus.train(), cfg.context, cfg.batch_size, cfg.seed);
  train::PretrainData data;
  data.next_batch = [&cursor] { return cursor.next(); };
  data.heldout_windows = eval_windows(corpus.heldout(), cfg.context, p.integer("eval-windows", 0));
  spdlog::info("pretraining {:.2f}M parameters for {} steps of {} tokens; held out: {} windows",
               cfg.model.parameter_count() / 1e6, cfg.steps, cfg.batch_size * cfg.accumulation * cfg.context,
               data.heldout_windows.size(0));

  const bool as_json = p.enabled("json");
  util::ProgressBar bar("pretrain", cfg.steps, "steps");
  double last_ppl = 0.0;
  train::PretrainCallbacks cb;
  cb.stop_requested = &InterruptGuard::flag();
  cb.on_step = [&](const train::PretrainStep& s) {
    char buf[160];
    std::snprintf(buf, sizeof buf, "loss %.4f lr %.2e |g| %.2f %.0f tok/s%s", s.loss, s.lr, s.grad_norm,
                  s.tokens_per_second,
                  last_ppl > 0 ? (" held-out ppl " + std::to_string(last_ppl)).c_str() : "");
    bar.update(s.step, buf);
  };
  cb.on_eval = [&](const train::PretrainEval& e) {
    last_ppl = e.heldout_perplexity;
    spdlog::info("step {}: held-out perplexity {:.4f} (best {:.4f}){}", e.step, e.heldout_perplexity,
                 e.best_perplexity, e.saved ? ", saved" : "");
  };
  InterruptGuard interrupt_guard;
  const train::PretrainResult r = train::pretrain(cfg, data, tok, p.str("out"), cb);
  bar.finish();
  nlohmann::json j = {{"out", p.str("out")},
                      {"best_heldout_perplexity", r.best_perplexity},
                      {"best_step", r.best_step},
                      {"steps", r.steps_done},
                      {"tokens", r.tokens_seen},
                      {"seconds", r.seconds},
                      {"stopped_early", r.stopped_early},
                      {"parameters", cfg.model.parameter_count()}};
  if (as_json) {
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf("best held-out perplexity %.4f at step %lld; %lld tokens in %.0f s; checkpoint in %s\n",
                r.best_perplexity, static_cast<long long>(r.best_step), static_cast<long long>(r.tokens_seen),
                r.seconds, p.str("out").c_str());
  }
  return 0;
}

}  // namespace hedgelab::cli
