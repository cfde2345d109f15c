// A Hugging Face style checkpoint folder: config.json, optional tokenizer.json, and safetensors weights in
// model.safetensors or shards listed by model.safetensors.index.json. PyTorch pickle checkpoints
// (pytorch_model.bin, *.pt, ...) are refused: unpickling can run arbitrary code, and nothing here unpickles.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/io/safetensors.h"

namespace hedgelab::io {

class CheckpointFolder {
 public:
  // Opens and validates every weight file; throws hedgelab::Error naming the folder or file on any problem.
  static CheckpointFolder open(const std::filesystem::path& path);

  CheckpointFolder(CheckpointFolder&&) noexcept;
  CheckpointFolder& operator=(CheckpointFolder&&) noexcept;
  ~CheckpointFolder();

  const std::filesystem::path& dir() const;
  const nlohmann::json& config() const;  // always a JSON object
  const std::filesystem::path& config_path() const;
  std::optional<std::filesystem::path> tokenizer_path() const;  // tokenizer.json when present
  // The safetensors files the weights come from, in name order.
  std::vector<std::filesystem::path> weight_files() const;

  std::vector<std::string> tensor_names() const;  // sorted
  bool has(const std::string& name) const;
  // Throws `DIR: tensor "name" is missing` when absent.
  const TensorInfo& info(const std::string& name) const;
  // The file holding `name` (throws like info() when absent).
  const SafetensorsFile& file_of(const std::string& name) const;
  // A fresh CPU tensor converted to `out`.
  at::Tensor load(const std::string& name, c10::ScalarType out = at::kFloat) const;
  // As load(), but first checks the stored shape:
  // `DIR/model.safetensors: tensor "w" has shape [4, 4], expected [8, 8]`.
  at::Tensor load_expect(const std::string& name, const std::vector<int64_t>& shape,
                         c10::ScalarType out = at::kFloat) const;

  // The stored dtypes in PyTorch spelling, most elements first: "float16", or "float16 + float32".
  std::string dtype_summary() const;
  // Elements of all floating-point tensors (integer/bool buffers such as attention masks are not parameters).
  int64_t total_parameters() const;

 private:
  struct Impl;
  explicit CheckpointFolder(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace hedgelab::io
