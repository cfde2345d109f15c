// hedgelab-cli's subcommands. Each takes the arguments after its name and returns the exit code; they throw
// hedgelab::Error (exit 1) or UsageError (exit 2), which main() prints as one line.
#pragma once

#include <string>
#include <vector>

namespace hedgelab::cli {

using Args = std::vector<std::string>;

int run_info(const Args& args);
int run_tokenize(const Args& args);
int run_generate(const Args& args);
int run_eval(const Args& args);
int run_pretrain(const Args& args);
int run_demo(const Args& args);
int run_distill(const Args& args);
int run_export(const Args& args);
int run_session(const Args& args);

}  // namespace hedgelab::cli
