#include "app/cli/args.h"

#include <cstdio>
#include <sstream>

namespace hedgelab::cli {

ArgParser::ArgParser(std::string command, std::string summary)
    : command_(std::move(command)), summary_(std::move(summary)) {}

ArgParser& ArgParser::option(const std::string& name, const std::string& value_name, const std::string& help,
                             std::optional<std::string> default_value) {
  order_.push_back(name);
  specs_[name] = Spec{value_name, help, std::move(default_value), false, false};
  return *this;
}

ArgParser& ArgParser::required(const std::string& name, const std::string& value_name,
                               const std::string& help) {
  order_.push_back(name);
  specs_[name] = Spec{value_name, help, std::nullopt, false, true};
  return *this;
}

ArgParser& ArgParser::flag(const std::string& name, const std::string& help) {
  order_.push_back(name);
  specs_[name] = Spec{"", help, std::nullopt, true, false};
  return *this;
}

bool ArgParser::parse(const std::vector<std::string>& args) {
  for (size_t i = 0; i < args.size(); ++i) {
    std::string a = args[i];
    if (a == "--help" || a == "-h") {
      std::fputs(help().c_str(), stdout);
      return false;
    }
    if (a.rfind("--", 0) != 0) throw UsageError(command_ + ": unexpected argument '" + a + "' (see --help)");
    std::string name = a.substr(2), value;
    bool inline_value = false;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      inline_value = true;
    }
    auto it = specs_.find(name);
    if (it == specs_.end()) throw UsageError(command_ + ": unknown option --" + name + " (see --help)");
    if (it->second.is_flag) {
      if (inline_value) throw UsageError(command_ + ": --" + name + " takes no value");
      values_[name] = "1";
      continue;
    }
    if (!inline_value) {
      if (i + 1 >= args.size())
        throw UsageError(command_ + ": --" + name + " needs a value " + it->second.value_name);
      value = args[++i];
    }
    values_[name] = value;
  }
  for (const auto& [name, spec] : specs_)
    if (spec.is_required && !values_.count(name))
      throw UsageError(command_ + ": --" + name + " " + spec.value_name + " is required (see --help)");
  return true;
}

bool ArgParser::has(const std::string& name) const {
  if (values_.count(name)) return true;
  auto it = specs_.find(name);
  return it != specs_.end() && it->second.default_value.has_value();
}

std::string ArgParser::str(const std::string& name) const {
  if (auto it = values_.find(name); it != values_.end()) return it->second;
  auto spec = specs_.find(name);
  if (spec != specs_.end() && spec->second.default_value) return *spec->second.default_value;
  throw UsageError(command_ + ": --" + name + " was not given");
}

int64_t ArgParser::integer(const std::string& name, int64_t min_value) const {
  const std::string s = str(name);
  size_t used = 0;
  int64_t v = 0;
  try {
    v = std::stoll(s, &used);
  } catch (...) {
    used = 0;
  }
  if (used != s.size() || s.empty())
    throw UsageError(command_ + ": --" + name + ": expected an integer, got '" + s + "'");
  if (v < min_value)
    throw UsageError(command_ + ": --" + name + ": expected at least " + std::to_string(min_value) +
                     ", got " + s);
  return v;
}

double ArgParser::number(const std::string& name) const {
  const std::string s = str(name);
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(s, &used);
  } catch (...) {
    used = 0;
  }
  if (used != s.size() || s.empty())
    throw UsageError(command_ + ": --" + name + ": expected a number, got '" + s + "'");
  return v;
}

bool ArgParser::enabled(const std::string& name) const {
  return values_.count(name) > 0;
}

std::string ArgParser::help() const {
  std::ostringstream out;
  out << "Usage: hedgelab-cli " << command_ << " [options]\n\n" << summary_ << "\n\nOptions:\n";
  for (const auto& name : order_) {
    const Spec& s = specs_.at(name);
    std::string left = "  --" + name + (s.is_flag ? "" : " " + s.value_name);
    out << left;
    out << std::string(left.size() < 30 ? 30 - left.size() : 1, ' ') << s.help;
    if (s.is_required) out << " (required)";
    if (s.default_value && !s.default_value->empty()) out << " [default: " << *s.default_value << "]";
    out << "\n";
  }
  out << "  --help                      this text\n";
  return out.str();
}

}  // namespace hedgelab::cli
