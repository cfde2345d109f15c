// The one exception type of HedgeLab's core: every failure a user can cause (a bad file, a bad field, a value
// out of range) is reported as an Error whose message is a single line naming the place and what was
// expected.
#pragma once

#include <stdexcept>
#include <string>

namespace hedgelab {

class Error : public std::runtime_error {
 public:
  // `where` names the file (and field, e.g. "config.json: rotary_pct"); `what` says what is wrong/expected.
  Error(const std::string& where, const std::string& what) : std::runtime_error(where + ": " + what) {}
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

}  // namespace hedgelab
