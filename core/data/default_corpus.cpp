#include <cstdlib>

#include "core/common/error.h"
#include "core/data/corpus.h"

#ifndef HEDGELAB_INSTALL_DATADIR
#define HEDGELAB_INSTALL_DATADIR "/usr/share/hedgelab"
#endif

namespace hedgelab::data {

std::filesystem::path default_corpus_path() {
  std::vector<std::filesystem::path> candidates;
  if (const char* env = std::getenv("HEDGELAB_DATA_DIR"); env && *env) candidates.emplace_back(env);
  candidates.push_back(std::filesystem::path(HEDGELAB_SOURCE_DIR) / "data");
  candidates.push_back(std::filesystem::path(HEDGELAB_INSTALL_DATADIR) / "data");
  for (const auto& dir : candidates) {
    std::error_code ec;
    if (std::filesystem::is_regular_file(dir / "kjv.txt", ec)) return dir / "kjv.txt";
  }
  std::string where;
  for (const auto& dir : candidates)
    where += (where.empty() ? "" : ", ") + dir.string();
  throw Error("default corpus kjv.txt",
              "not found in " + where + "; run scripts/extract-kjv.sh (needs: apt-get install bible-kjv)");
}

}  // namespace hedgelab::data
