// hedgelab-cli: the headless entry point. Global options come before the subcommand.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <torch/version.h>

#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "app/cli/args.h"
#include "app/cli/commands.h"
#include "core/common/error.h"
#include "core/common/threads.h"
#include "core/common/version.h"

namespace {

struct Command {
  const char* name;
  const char* summary;
  int (*run)(const hedgelab::cli::Args&);
};

const Command kCommands[] = {
    {"info", "describe a checkpoint: architecture, parameter count, dtype", hedgelab::cli::run_info},
    {"tokenize", "print the token ids of a text", hedgelab::cli::run_tokenize},
    {"eval", "perplexity of a checkpoint on a corpus (held-out split)", hedgelab::cli::run_eval},
    {"generate", "continue a prompt (greedy or sampled)", hedgelab::cli::run_generate},
    {"pretrain", "train a GPT-NeoX teacher from scratch on a corpus", hedgelab::cli::run_pretrain},
    {"distill", "run the two-stage recipe (or --compare the paper's runs) from a preset",
     hedgelab::cli::run_distill},
    {"export", "write a session's student as a folder eval and generate load", hedgelab::cli::run_export},
    {"session", "look into a session file: show its contents, print a metric as CSV",
     hedgelab::cli::run_session},
    {"demo", "the embedded demo: evaluate and sample the demo teacher on the default corpus",
     hedgelab::cli::run_demo},
};

void print_usage() {
  std::printf(
      "Usage: hedgelab-cli [--threads N] [--log-level LEVEL] <command> [options]\n\n"
      "HedgeLab %s: distil Transformer language models into Mamba models.\n\nCommands:\n",
      hedgelab::kVersion);
  for (const auto& c : kCommands)
    std::printf("  %-10s %s\n", c.name, c.summary);
  std::printf(
      "\nGlobal options:\n"
      "  --threads N        LibTorch CPU threads [default: all cores]\n"
      "  --log-level LEVEL  trace, debug, info, warn, error, off [default: info]\n"
      "  --version          print versions and exit\n"
      "  --help             this text; '<command> --help' describes a command\n");
}

}  // namespace

int main(int argc, char** argv) {
  hedgelab::prefer_passive_openmp_wait(argv);
  // Logs go to stderr so that --json output on stdout stays machine-readable.
  spdlog::set_default_logger(spdlog::stderr_color_mt("hedgelab"));
  spdlog::set_pattern("[%H:%M:%S] [%^%l%$] %v");
  std::vector<std::string> args(argv + 1, argv + argc);
  int threads = 0;
  size_t i = 0;
  try {
    for (; i < args.size() && args[i].rfind("--", 0) == 0; ++i) {
      const std::string& a = args[i];
      if (a == "--help" || a == "-h") {
        print_usage();
        return 0;
      }
      if (a == "--version") {
        std::printf("hedgelab-cli %s (LibTorch %s)\n", hedgelab::kVersion, TORCH_VERSION);
        return 0;
      }
      if ((a == "--threads" || a == "--log-level") && i + 1 >= args.size())
        throw hedgelab::cli::UsageError(a + " needs a value");
      if (a == "--threads") {
        try {
          threads = std::stoi(args[++i]);
        } catch (...) {
          throw hedgelab::cli::UsageError("--threads: expected an integer, got '" + args[i] + "'");
        }
      } else if (a == "--log-level") {
        auto level = spdlog::level::from_str(args[++i]);
        if (level == spdlog::level::off && args[i] != "off")
          throw hedgelab::cli::UsageError("--log-level: unknown level '" + args[i] + "'");
        spdlog::set_level(level);
      } else {
        throw hedgelab::cli::UsageError("unknown global option " + a + " (see --help)");
      }
    }
    if (i >= args.size()) {
      print_usage();
      return 2;
    }
    const std::string name = args[i];
    for (const auto& c : kCommands) {
      if (name != c.name) continue;
      const int n = hedgelab::configure_threads(threads);
      spdlog::debug("LibTorch {} with {} threads", TORCH_VERSION, n);
      return c.run(hedgelab::cli::Args(args.begin() + static_cast<long>(i) + 1, args.end()));
    }
    throw hedgelab::cli::UsageError("unknown command '" + name + "' (see --help)");
  } catch (const hedgelab::cli::UsageError& e) {
    std::fprintf(stderr, "hedgelab-cli: %s\n", e.what());
    return 2;
  } catch (const hedgelab::Error& e) {
    std::fprintf(stderr, "hedgelab-cli: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    // Anything else (LibTorch, allocation) is still one line and exit 1, never a crash.
    std::string msg = e.what();
    if (auto nl = msg.find('\n'); nl != std::string::npos) msg = msg.substr(0, nl);
    std::fprintf(stderr, "hedgelab-cli: error: %s\n", msg.c_str());
    return 1;
  }
}
