// A small command-line parser for hedgelab-cli's subcommands: --name VALUE / --name=VALUE options, flags,
// generated --help, and one-line usage errors.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace hedgelab::cli {

// A wrong flag or value: printed as one line, exit code 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class ArgParser {
 public:
  ArgParser(std::string command, std::string summary);

  ArgParser& option(const std::string& name, const std::string& value_name, const std::string& help,
                    std::optional<std::string> default_value = std::nullopt);
  ArgParser& required(const std::string& name, const std::string& value_name, const std::string& help);
  ArgParser& flag(const std::string& name, const std::string& help);

  // Returns false when --help was asked for (the help text has been printed).
  bool parse(const std::vector<std::string>& args);

  bool has(const std::string& name) const;  // given on the command line, or has a default
  std::string str(const std::string& name) const;
  int64_t integer(const std::string& name, int64_t min_value = INT64_MIN) const;
  double number(const std::string& name) const;
  bool enabled(const std::string& name) const;  // a flag
  std::string help() const;

 private:
  struct Spec {
    std::string value_name, help;
    std::optional<std::string> default_value;
    bool is_flag = false, is_required = false;
  };
  std::string command_, summary_;
  std::vector<std::string> order_;
  std::map<std::string, Spec> specs_;
  std::map<std::string, std::string> values_;
};

}  // namespace hedgelab::cli
