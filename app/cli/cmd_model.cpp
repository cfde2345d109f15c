// info, tokenize and generate: the subcommands that look at one checkpoint.
#include <spdlog/spdlog.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "app/cli/args.h"
#include "app/cli/commands.h"
#include "app/cli/loading.h"
#include "core/io/unicode.h"

namespace hedgelab::cli {

using nlohmann::json;

namespace {
// Length of the longest prefix of `bytes` that does not end inside a UTF-8 sequence.
size_t complete_utf8_prefix(const std::string& bytes) {
  size_t n = bytes.size(), back = 0;
  while (back < n && back < 4 && (static_cast<unsigned char>(bytes[n - 1 - back]) & 0xC0) == 0x80)
    ++back;
  if (back == n) return n;
  const unsigned char lead = static_cast<unsigned char>(bytes[n - 1 - back]);
  const size_t want = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
  return want > back + 1 ? n - 1 - back : n;
}
}  // namespace

int run_info(const Args& args) {
  ArgParser p("info", "Describe a checkpoint folder (default: the embedded demo teacher).");
  p.option("checkpoint", "DIR", "checkpoint folder (config.json + safetensors)", "")
      .flag("json", "print JSON");
  if (!p.parse(args)) return 0;
  const std::string dir = checkpoint_dir_or_demo(p.str("checkpoint"));
  auto folder = io::CheckpointFolder::open(dir);
  const auto c = models::read_gpt_neox_config(folder);
  json j = {{"checkpoint", dir},
            {"architecture", "GPTNeoXForCausalLM"},
            {"layers", c.num_layers},
            {"hidden_size", c.hidden_size},
            {"heads", c.num_heads},
            {"head_size", c.head_size()},
            {"intermediate_size", c.intermediate_size},
            {"vocab_size", c.vocab_size},
            {"rotary_dims", c.rotary_dims()},
            {"rotary_base", c.rotary_base},
            {"parallel_residual", c.use_parallel_residual},
            {"hidden_act", c.hidden_act},
            {"tied_embeddings", c.tie_word_embeddings},
            {"parameters", c.parameter_count()},
            {"weights_dtype", folder.dtype_summary()},
            {"tokenizer", folder.tokenizer_path() ? folder.tokenizer_path()->string() : ""}};
  if (p.enabled("json")) {
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("checkpoint     %s\n", dir.c_str());
  std::printf("architecture   GPTNeoXForCausalLM (%s residual)\n",
              c.use_parallel_residual ? "parallel" : "sequential");
  std::printf("layers         %lld\n", static_cast<long long>(c.num_layers));
  std::printf("width          d=%lld, %lld heads of %lld, MLP %lld (%s)\n",
              static_cast<long long>(c.hidden_size), static_cast<long long>(c.num_heads),
              static_cast<long long>(c.head_size()), static_cast<long long>(c.intermediate_size),
              c.hidden_act.c_str());
  std::printf("rotary         %lld of %lld channels, base %g\n", static_cast<long long>(c.rotary_dims()),
              static_cast<long long>(c.head_size()), c.rotary_base);
  std::printf("vocabulary     %lld%s\n", static_cast<long long>(c.vocab_size),
              c.tie_word_embeddings ? " (tied embeddings)" : "");
  std::printf("parameters     %lld (%.2fM)\n", static_cast<long long>(c.parameter_count()),
              c.parameter_count() / 1e6);
  std::printf("weights dtype  %s\n", folder.dtype_summary().c_str());
  std::printf("tokenizer      %s\n", folder.tokenizer_path() ? folder.tokenizer_path()->c_str() : "(none)");
  return 0;
}

int run_tokenize(const Args& args) {
  ArgParser p("tokenize", "Print the token ids of a text with a checkpoint's tokenizer.json.");
  p.option("checkpoint", "DIR", "checkpoint folder (default: the demo teacher)", "")
      .required("text", "S", "the text to tokenize")
      .flag("json", "print JSON");
  if (!p.parse(args)) return 0;
  auto folder = io::CheckpointFolder::open(checkpoint_dir_or_demo(p.str("checkpoint")));
  auto tok = load_tokenizer(folder);
  const auto ids = tok.encode(p.str("text"));
  if (p.enabled("json")) {
    json pieces = json::array();
    for (auto id : ids)
      pieces.push_back(tok.decode({id}));
    std::printf("%s\n", json({{"ids", ids}, {"count", ids.size()}, {"pieces", pieces}}).dump().c_str());
    return 0;
  }
  for (size_t i = 0; i < ids.size(); ++i)
    std::printf("%s%d", i ? " " : "", ids[i]);
  std::printf("\n");
  return 0;
}

int run_generate(const Args& args) {
  ArgParser p(
      "generate",
      "Continue a prompt with a checkpoint: greedy by default, sampled with --temperature. A HedgeMamba\n"
      "student decodes recurrently: O(1) state per layer, whatever the length.");
  p.option("checkpoint", "DIR", "teacher or exported student folder (default: the demo teacher)", "")
      .required("prompt", "S", "the text to continue")
      .option("max-new", "N", "tokens to generate", "64")
      .option("temperature", "X", "0 = greedy; > 0 samples", "0")
      .option("top-k", "K", "sample among the K most likely tokens (0 = all)", "0")
      .option("seed", "S", "sampling seed", "0")
      .flag("json", "print JSON");
  if (!p.parse(args)) return 0;
  models::GenerationOptions o;
  o.max_new_tokens = p.integer("max-new", 0);
  o.temperature = p.number("temperature");
  if (o.temperature < 0) throw UsageError("generate: --temperature: expected a number >= 0");
  o.top_k = p.integer("top-k", 0);
  o.seed = static_cast<uint64_t>(p.integer("seed", 0));
  auto model = load_model(p.str("checkpoint"));
  auto tok = load_tokenizer(model.folder);
  o.stop_token = tok.eos_id();
  const auto prompt_ids32 = tok.encode(p.str("prompt"));
  std::vector<int64_t> prompt(prompt_ids32.begin(), prompt_ids32.end());
  const bool as_json = p.enabled("json");
  if (!as_json) std::printf("%s", p.str("prompt").c_str());
  std::string pending;  // bytes of a character not complete yet
  auto on_token = [&](int64_t id) {
    if (as_json) return;
    pending += tok.decode_bytes({static_cast<io::TokenId>(id)}, true);
    std::fwrite(pending.data(), 1, complete_utf8_prefix(pending), stdout);
    std::fflush(stdout);
    pending.erase(0, complete_utf8_prefix(pending));
  };
  auto ids = model.is_student() ? models::generate(model.student, prompt, o, on_token)
                                : models::generate(model.teacher, prompt, o, on_token);
  std::vector<io::TokenId> ids32(ids.begin(), ids.end());
  const std::string completion = tok.decode(ids32, true);
  if (as_json) {
    std::printf("%s\n", json({{"prompt", p.str("prompt")},
                              {"completion", completion},
                              {"ids", ids},
                              {"model", model.is_student() ? "hedge_mamba_student" : "gpt_neox"},
                              {"temperature", o.temperature},
                              {"top_k", o.top_k},
                              {"seed", o.seed}})
                            .dump()
                            .c_str());
  } else {
    if (!pending.empty()) std::printf("%s", io::unicode::utf8_lossy(pending).c_str());
    std::printf("\n");
  }
  return 0;
}

}  // namespace hedgelab::cli
