// demo: what the README's first command runs headless: the demo teacher on the default corpus, evaluated and
// sampled, with a summary on stdout and the details written under --out.
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "app/cli/args.h"
#include "app/cli/commands.h"
#include "app/cli/loading.h"
#include "core/common/error.h"
#include "core/data/batches.h"
#include "core/util/atomic_file.h"
#include "core/util/progress.h"

namespace hedgelab::cli {

int run_demo(const Args& args) {
  ArgParser p(
      "demo",
      "Evaluate the embedded demo teacher on the default corpus's held-out split and sample from it.");
  p.option("out", "DIR", "where summary.json and samples.txt go", "out/demo")
      .option("checkpoint", "DIR", "teacher (default: the demo teacher)", "")
      .option("corpus", "PATH", "corpus (default: data/kjv.txt)", "")
      .option("max-windows", "N", "held-out windows to evaluate (0 = all)", "256")
      .flag("json", "print the summary as JSON");
  if (!p.parse(args)) return 0;
  const auto t0 = std::chrono::steady_clock::now();
  auto teacher = load_teacher(p.str("checkpoint"));
  auto tok = load_tokenizer(teacher.folder);
  auto corpus = load_corpus_with(tok, p.str("corpus"), true);
  const int64_t T = teacher.model->config().max_position_embeddings;
  at::Tensor windows = eval_windows(corpus.heldout(), T, p.integer("max-windows", 0));  // [N, T+1]

  const bool as_json = p.enabled("json");
  util::ProgressBar bar("held-out perplexity", windows.size(0), "windows");
  bar.set_enabled(!as_json);
  auto ppl = models::perplexity(teacher.model, windows, 8, [&](int64_t done, int64_t) { bar.update(done); });
  bar.finish();
  const auto t_eval = std::chrono::steady_clock::now();

  nlohmann::json samples = nlohmann::json::array();
  std::string samples_text;
  struct Sample {
    const char* prompt;
    double temperature;
    uint64_t seed;
  };
  for (const Sample& s : {Sample{"And God said", 0.0, 0}, Sample{"In the beginning", 0.8, 1},
                          Sample{"The LORD is my shepherd", 0.8, 2}}) {
    models::GenerationOptions o;
    o.max_new_tokens = 120;
    o.temperature = s.temperature;
    o.top_k = s.temperature > 0 ? 40 : 0;
    o.seed = s.seed;
    o.stop_token = tok.eos_id();
    const auto prompt32 = tok.encode(s.prompt);
    const auto ids =
        models::generate(teacher.model, std::vector<int64_t>(prompt32.begin(), prompt32.end()), o);
    const std::string text =
        std::string(s.prompt) + tok.decode(std::vector<io::TokenId>(ids.begin(), ids.end()), true);
    samples.push_back(
        {{"prompt", s.prompt}, {"temperature", s.temperature}, {"seed", s.seed}, {"text", text}});
    samples_text += "--- " + std::string(s.prompt) +
                    (s.temperature > 0 ? " (sampled, T=0.8, top-k 40)" : " (greedy)") + "\n" + text + "\n\n";
  }
  const double eval_s = std::chrono::duration<double>(t_eval - t0).count();
  const double total_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::filesystem::path out = p.str("out");
  std::error_code ec;
  std::filesystem::create_directories(out, ec);
  if (ec) throw Error(out.string(), "cannot create the output folder: " + ec.message());
  nlohmann::json summary = {{"teacher", teacher.dir},
                            {"parameters", teacher.model->config().parameter_count()},
                            {"corpus", corpus.source().string()},
                            {"corpus_tokens", corpus.size()},
                            {"context", T},
                            {"heldout_windows", ppl.windows},
                            {"heldout_tokens", ppl.tokens},
                            {"heldout_perplexity", ppl.perplexity},
                            {"chance_perplexity", teacher.model->config().vocab_size},
                            {"samples", samples},
                            {"seconds", total_s},
                            {"summary_file", (out / "summary.json").string()},
                            {"samples_file", (out / "samples.txt").string()}};
  util::write_file_atomically(out / "summary.json", summary.dump(2) + "\n");
  util::write_file_atomically(out / "samples.txt", samples_text);
  if (as_json) {
    std::printf("%s\n", summary.dump(2).c_str());
    return 0;
  }
  std::printf("\nHedgeLab demo: the teacher a student will be distilled from\n");
  std::printf("  teacher     %s (%.2fM parameters)\n", teacher.dir.c_str(),
              teacher.model->config().parameter_count() / 1e6);
  std::printf("  corpus      %s (%lld tokens)\n", corpus.source().c_str(),
              static_cast<long long>(corpus.size()));
  std::printf("  held-out    perplexity %.3f on %lld tokens (chance: %lld) in %.1f s\n", ppl.perplexity,
              static_cast<long long>(ppl.tokens), static_cast<long long>(teacher.model->config().vocab_size),
              eval_s);
  std::printf("\n%s", samples_text.c_str());
  std::printf("Output: %s and %s\n", (out / "summary.json").c_str(), (out / "samples.txt").c_str());
  return 0;
}

}  // namespace hedgelab::cli
