#include "core/common/env.h"

#include <cstdlib>
#include <string>

namespace hedgelab {

bool env_switch(const char* name, bool default_on) {
  const char* v = std::getenv(name);
  if (v == nullptr) return default_on;
  return default_on ? std::string(v) != "0" : std::string(v) == "1";
}

}  // namespace hedgelab
