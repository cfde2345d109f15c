// Where HedgeLab finds what it ships: presets and the demo teacher.
#pragma once

#include <filesystem>

namespace hedgelab {

// $HEDGELAB_RESOURCES_DIR, else <source>/resources (a build tree), else <install prefix>/share/hedgelab.
// Throws hedgelab::Error when none exists.
std::filesystem::path resources_dir();

// The demo teacher committed under resources/demo-teacher (config.json, model.safetensors, tokenizer.json).
std::filesystem::path demo_teacher_dir();

}  // namespace hedgelab
