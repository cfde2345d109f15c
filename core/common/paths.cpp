#include "core/common/paths.h"

#include <cstdlib>

#include "core/common/error.h"

#ifndef HEDGELAB_INSTALL_DATADIR
#define HEDGELAB_INSTALL_DATADIR "/usr/share/hedgelab"
#endif

namespace hedgelab {

std::filesystem::path resources_dir() {
  if (const char* env = std::getenv("HEDGELAB_RESOURCES_DIR"); env && *env) {
    if (!std::filesystem::is_directory(env))
      throw Error(std::string("HEDGELAB_RESOURCES_DIR=") + env, "is not a folder");
    return env;
  }
  for (const std::filesystem::path& p : {std::filesystem::path(HEDGELAB_SOURCE_DIR) / "resources",
                                         std::filesystem::path(HEDGELAB_INSTALL_DATADIR)}) {
    if (std::filesystem::is_directory(p / "presets") || std::filesystem::is_directory(p / "demo-teacher"))
      return p;
  }
  throw Error("resources",
              "not found; set HEDGELAB_RESOURCES_DIR to the folder holding demo-teacher/ and presets/");
}

std::filesystem::path demo_teacher_dir() {
  return resources_dir() / "demo-teacher";
}

}  // namespace hedgelab
