// eval: held-out perplexity of a checkpoint under the protocol of docs/method.md §5.
#include <ATen/core/grad_mode.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "app/cli/args.h"
#include "app/cli/commands.h"
#include "app/cli/loading.h"
#include "core/data/batches.h"
#include "core/util/progress.h"

namespace hedgelab::cli {

int run_eval(const Args& args) {
  ArgParser p("eval",
              "Perplexity of a checkpoint on a corpus: windows of T+1 tokens at 0, T, 2T, ... (full\n"
              "windows only), predicting tokens 1..T of each; ppl = exp(mean NLL).");
  p.option("checkpoint", "DIR", "teacher or exported student folder (default: the demo teacher)", "")
      .option("corpus", "PATH", "text file/folder, .jsonl or .bin (default: data/kjv.txt)", "")
      .option("context", "T", "window length (default: min(max_position_embeddings, 1024))", "0")
      .option("split", "NAME", "heldout, train or all", "heldout")
      .option("batch", "B", "windows per forward pass", "8")
      .option("max-windows", "N", "evaluate at most N windows (0 = all)", "0")
      .flag("no-cache", "tokenize again instead of reading the tokenization cache")
      .flag("json", "print JSON");
  if (!p.parse(args)) return 0;
  const std::string split = p.str("split");
  if (split != "heldout" && split != "train" && split != "all")
    throw UsageError("eval: --split: expected heldout, train or all, got '" + split + "'");
  const int64_t batch = p.integer("batch", 1);
  const int64_t max_windows = p.integer("max-windows", 0);

  auto model = load_model(p.str("checkpoint"));
  auto tok = load_tokenizer(model.folder);
  int64_t T = p.integer("context", 0);
  if (T == 0) T = std::min<int64_t>(model.config().max_position_embeddings, 1024);
  if (T < 1) throw UsageError("eval: --context: expected a positive integer");
  auto corpus = load_corpus_with(tok, p.str("corpus"), !p.enabled("no-cache"));
  const data::TokenView view = split == "all"     ? corpus.all()
                               : split == "train" ? corpus.train()
                                                  : corpus.heldout();
  at::Tensor windows = eval_windows(view, T, max_windows);  // [N, T+1]

  const bool as_json = p.enabled("json");
  util::ProgressBar bar("eval", windows.size(0), "windows");
  bar.set_enabled(!as_json);
  at::NoGradGuard no_grad;
  auto result =
      models::perplexity(model.logits(), windows, batch, [&](int64_t done, int64_t) { bar.update(done); });
  bar.finish();
  nlohmann::json j = {{"checkpoint", model.dir},
                      {"model", model.is_student() ? "hedge_mamba_student" : "gpt_neox"},
                      {"corpus", corpus.source().string()},
                      {"split", split},
                      {"context", T},
                      {"windows", result.windows},
                      {"tokens", result.tokens},
                      {"mean_nll", result.mean_nll},
                      {"perplexity", result.perplexity}};
  if (as_json) {
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf(
        "perplexity %.4f (mean NLL %.5f nats) on %lld tokens in %lld windows of %lld (%s split of %s)\n",
        result.perplexity, result.mean_nll, static_cast<long long>(result.tokens),
        static_cast<long long>(result.windows), static_cast<long long>(T), split.c_str(),
        corpus.source().c_str());
  }
  return 0;
}

}  // namespace hedgelab::cli
