// The LibTorch side of safetensors: copy a validated tensor out of a mapping into an at::Tensor, and write a
// safetensors file atomically. Uses only ATen API that LibTorch 1.13 and 2.x share.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>

#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/io/safetensors.h"

namespace hedgelab::io {

// The at::ScalarType holding `dtype`; throws hedgelab::Error(where, ...) for a dtype that cannot be loaded.
c10::ScalarType scalar_type_of(DType dtype, const std::string& where);
// The safetensors dtype storing `type`; throws hedgelab::Error(where, ...) for one the format cannot hold.
DType dtype_of(c10::ScalarType type, const std::string& where);

// A fresh CPU tensor (never aliasing the mapping) with the stored values converted to `out`.
at::Tensor read_tensor(const SafetensorsFile& file, const TensorInfo& info, c10::ScalarType out = at::kFloat);

// Writes `named` (each tensor keeps its dtype; CPU contiguous copies are made as needed) to `path`, data laid
// out in name order, header padded with spaces to 8-byte alignment. `metadata` goes to "__metadata__", with
// "format": "pt" added when absent because transformers refuses a safetensors file without it. Atomic: a
// temporary file in the same directory is written, fsynced and renamed over `path`, so `path` holds either
// the old or the new content. Throws hedgelab::Error naming the directory, file or tensor on failure.
void save_safetensors(const std::filesystem::path& path,
                      const std::vector<std::pair<std::string, at::Tensor>>& named,
                      const std::map<std::string, std::string>& metadata = {});

}  // namespace hedgelab::io
