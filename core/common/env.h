// Switches read from the environment once, at load (the HEDGELAB_FUSED_* kernel preferences, the reference
// path): one reading of "on" and "off" for all of them.
#pragma once

namespace hedgelab {

// The variable `name` as a switch. Unset: `default_on`. A switch that defaults on is turned off by "0" (any
// other value keeps it on); one that defaults off is turned on by "1" (any other value keeps it off).
bool env_switch(const char* name, bool default_on);

}  // namespace hedgelab
