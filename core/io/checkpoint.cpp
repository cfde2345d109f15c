#include "core/io/checkpoint.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <map>
#include <sstream>
#include <system_error>
#include <utility>

#include <nlohmann/json.hpp>

#include "core/common/error.h"
#include "core/io/safetensors_torch.h"

namespace hedgelab::io {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kSingleName = "model.safetensors";
constexpr const char* kIndexName = "model.safetensors.index.json";
constexpr uint64_t kMaxJsonFileBytes = 100'000'000;
constexpr int kMaxJsonDepth = 64;

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::string one_line(std::string s) {
  if (s.rfind("[json.exception.", 0) == 0 && s.find("] ") != std::string::npos) s.erase(0, s.find("] ") + 2);
  for (char& c : s) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  }
  return s;
}

bool is_pickle_extension(const fs::path& p) {
  const std::string ext = lower(p.extension().string());
  return ext == ".bin" || ext == ".pt" || ext == ".pth" || ext == ".ckpt";
}

// Files in a folder that hold (or index) pickled weights.
bool is_pickle_weights(const std::string& name) {
  const std::string n = lower(name);
  if (n == "pytorch_model.bin.index.json") return true;
  if (n.rfind("pytorch_model", 0) == 0 && n.size() > 4 && n.compare(n.size() - 4, 4, ".bin") == 0)
    return true;
  const std::string ext = lower(fs::path(name).extension().string());
  return ext == ".pt" || ext == ".pth" || ext == ".ckpt";
}

std::string convert_hint_folder(const fs::path& dir) {
  const std::string d = dir.string();
  return "python -c \"from transformers import AutoModelForCausalLM as M; M.from_pretrained('" + d +
         "').save_pretrained('" + d + "', safe_serialization=True)\"";
}

[[noreturn]] void refuse_pickle(const std::string& where, const std::string& found, const std::string& hint) {
  throw Error(where, "PyTorch pickle checkpoint (" + found +
                         ") refused: unpickling can run arbitrary code, so HedgeLab reads only safetensors; "
                         "convert it first, e.g. " +
                         hint);
}

json read_json_file(const fs::path& path, const std::string& expected_what) {
  const std::string file = path.string();
  std::error_code ec;
  const auto status = fs::status(path, ec);
  if (ec || !fs::exists(status)) throw Error(file, "no such file or directory, expected " + expected_what);
  if (!fs::is_regular_file(status)) throw Error(file, "is not a regular file, expected " + expected_what);
  const auto size = fs::file_size(path, ec);
  if (ec) throw Error(file, "cannot read (" + ec.message() + ")");
  if (size > kMaxJsonFileBytes) {
    throw Error(file, "is " + std::to_string(size) + " bytes, expected a JSON file of at most " +
                          std::to_string(kMaxJsonFileBytes));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(file, "cannot open for reading");
  std::ostringstream buffer;
  buffer << in.rdbuf();
  const std::string text = buffer.str();
  const auto callback = [&](int depth, json::parse_event_t event, json&) {
    if ((event == json::parse_event_t::object_start || event == json::parse_event_t::array_start) &&
        depth >= kMaxJsonDepth) {
      throw Error(file, "JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
    }
    return true;
  };
  json j;
  try {
    j = json::parse(text, callback);
  } catch (const json::parse_error& e) {
    throw Error(file, "not valid JSON (byte " + std::to_string(e.byte) + "): " + one_line(e.what()));
  } catch (const json::exception& e) {
    throw Error(file, "not valid JSON: " + one_line(e.what()));
  }
  if (!j.is_object()) throw Error(file, std::string("expected a JSON object, got ") + j.type_name());
  return j;
}

// A shard named by the index must be a file directly inside the folder: no separators, no "." or "..".
bool is_plain_file_name(const std::string& name) {
  if (name.empty() || name == "." || name == "..") return false;
  return name.find_first_of(std::string("/\\\0", 3)) == std::string::npos;
}

std::string shape_text(const std::vector<int64_t>& shape) {
  return format_shape(shape);
}

}  // namespace

struct CheckpointFolder::Impl {
  fs::path dir;
  fs::path config_path;
  std::optional<fs::path> tokenizer;
  json config;
  std::vector<SafetensorsFile> files;
  // name → (index into files, the file's entry); entries point into `files`, which never changes after open.
  std::map<std::string, std::pair<std::size_t, const TensorInfo*>> table;

  const std::pair<std::size_t, const TensorInfo*>& lookup(const std::string& name) const {
    auto it = table.find(name);
    if (it == table.end()) throw Error(dir.string() + ": tensor " + quote_tensor_name(name) + " is missing");
    return it->second;
  }
};

CheckpointFolder::CheckpointFolder(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CheckpointFolder::CheckpointFolder(CheckpointFolder&&) noexcept = default;
CheckpointFolder& CheckpointFolder::operator=(CheckpointFolder&&) noexcept = default;
CheckpointFolder::~CheckpointFolder() = default;

CheckpointFolder CheckpointFolder::open(const fs::path& path) {
  fs::path dir = path;
  if (!dir.has_filename() && dir.has_parent_path() && dir.parent_path() != dir) dir = dir.parent_path();
  const std::string where = dir.string();

  std::error_code ec;
  const auto status = fs::status(dir, ec);
  if (ec || !fs::exists(status)) throw Error(where, "no such file or directory");
  if (fs::is_regular_file(status)) {
    if (is_pickle_extension(dir)) {
      const std::string name = dir.filename().string();
      const std::string hint =
          lower(name).rfind("pytorch_model", 0) == 0
              ? convert_hint_folder(dir.has_parent_path() ? dir.parent_path() : fs::path("."))
              : "python -c \"import torch; from safetensors.torch import save_file; save_file(torch.load('" +
                    where + "', weights_only=True), 'model.safetensors')\" and put it beside config.json";
      refuse_pickle(where, name, hint);
    }
    throw Error(where, "is a file, expected a checkpoint folder (config.json + model.safetensors)");
  }
  if (!fs::is_directory(status)) throw Error(where, "is not a folder, expected a checkpoint folder");

  const bool single = fs::exists(dir / kSingleName, ec);
  const bool sharded = !single && fs::exists(dir / kIndexName, ec);
  if (!single && !sharded) {
    std::vector<std::string> pickles;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
      const std::string name = it->path().filename().string();
      if (is_pickle_weights(name)) pickles.push_back(name);
    }
    std::sort(pickles.begin(), pickles.end());
    if (!pickles.empty()) refuse_pickle(where, pickles.front(), convert_hint_folder(dir));
    throw Error(where, std::string("no weights found, expected ") + kSingleName + " or " + kIndexName);
  }

  auto impl = std::make_unique<Impl>();
  impl->dir = dir;
  impl->config_path = dir / "config.json";
  impl->config = read_json_file(impl->config_path, "the model's config.json");
  if (fs::is_regular_file(dir / "tokenizer.json", ec)) impl->tokenizer = dir / "tokenizer.json";

  if (single) {
    impl->files.push_back(SafetensorsFile::open(dir / kSingleName));
  } else {
    const fs::path index_path = dir / kIndexName;
    const std::string index_file = index_path.string();
    const json index = read_json_file(index_path, "a safetensors shard index");
    if (!index.contains("weight_map") || !index.at("weight_map").is_object()) {
      throw Error(index_file + ": weight_map", "expected an object {tensor name: shard file name}");
    }
    const json& weight_map = index.at("weight_map");
    if (weight_map.empty())
      throw Error(index_file + ": weight_map", "is empty, expected at least one tensor");
    std::map<std::string, std::vector<std::string>> listed;  // shard → tensors the index puts there
    for (auto it = weight_map.begin(); it != weight_map.end(); ++it) {
      const std::string field = index_file + ": weight_map[" + quote_tensor_name(it.key()) + "]";
      if (!it.value().is_string()) {
        throw Error(field, std::string("expected a shard file name, got ") + it.value().type_name());
      }
      const std::string& shard = it.value().get_ref<const std::string&>();
      if (!is_plain_file_name(shard)) {
        throw Error(field, "shard " + quote_tensor_name(shard) +
                               " must be a plain file name inside the folder (no '/', '\\' or '..')");
      }
      listed[shard].push_back(it.key());
    }
    for (const auto& [shard, names] : listed) {
      const fs::path shard_path = dir / shard;
      if (!fs::exists(shard_path, ec)) {
        throw Error(shard_path.string(),
                    std::string("no such file or directory (listed in ") + kIndexName + ")");
      }
      impl->files.push_back(SafetensorsFile::open(shard_path));
      const SafetensorsFile& f = impl->files.back();
      for (const std::string& name : names) {
        if (!f.find(name)) {
          throw Error(f.path().string() + ": tensor " + quote_tensor_name(name) + " is missing, but " +
                      kIndexName + " lists it in this shard");
        }
      }
    }
  }

  // Every tensor of every file, each in exactly one file.
  for (std::size_t i = 0; i < impl->files.size(); ++i) {
    for (const TensorInfo& t : impl->files[i].tensors()) {
      auto [it, inserted] = impl->table.emplace(t.name, std::make_pair(i, &t));
      if (!inserted) {
        throw Error(where + ": tensor " + quote_tensor_name(t.name) + " is in both " +
                    impl->files[it->second.first].path().filename().string() + " and " +
                    impl->files[i].path().filename().string() + ", expected exactly one shard");
      }
    }
  }
  return CheckpointFolder(std::move(impl));
}

const fs::path& CheckpointFolder::dir() const {
  return impl_->dir;
}
const json& CheckpointFolder::config() const {
  return impl_->config;
}
const fs::path& CheckpointFolder::config_path() const {
  return impl_->config_path;
}
std::optional<fs::path> CheckpointFolder::tokenizer_path() const {
  return impl_->tokenizer;
}

std::vector<fs::path> CheckpointFolder::weight_files() const {
  std::vector<fs::path> paths;
  for (const auto& f : impl_->files)
    paths.push_back(f.path());
  return paths;
}

std::vector<std::string> CheckpointFolder::tensor_names() const {
  std::vector<std::string> names;
  names.reserve(impl_->table.size());
  for (const auto& entry : impl_->table)
    names.push_back(entry.first);
  return names;
}

bool CheckpointFolder::has(const std::string& name) const {
  return impl_->table.count(name) > 0;
}

const TensorInfo& CheckpointFolder::info(const std::string& name) const {
  return *impl_->lookup(name).second;
}

const SafetensorsFile& CheckpointFolder::file_of(const std::string& name) const {
  return impl_->files[impl_->lookup(name).first];
}

at::Tensor CheckpointFolder::load(const std::string& name, c10::ScalarType out) const {
  const auto& [file_index, info] = impl_->lookup(name);
  return read_tensor(impl_->files[file_index], *info, out);
}

at::Tensor CheckpointFolder::load_expect(const std::string& name, const std::vector<int64_t>& shape,
                                         c10::ScalarType out) const {
  const auto& [file_index, info] = impl_->lookup(name);
  if (info->shape != shape) {
    throw Error(impl_->files[file_index].path().string() + ": tensor " + quote_tensor_name(name) +
                " has shape " + shape_text(info->shape) + ", expected " + shape_text(shape));
  }
  return read_tensor(impl_->files[file_index], *info, out);
}

std::string CheckpointFolder::dtype_summary() const {
  std::map<std::string, int64_t> elements;
  for (const auto& entry : impl_->table)
    elements[dtype_torch_name(entry.second.second->dtype)] += entry.second.second->numel();
  if (elements.empty()) return "none";
  std::vector<std::pair<std::string, int64_t>> sorted(elements.begin(), elements.end());
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  std::string s;
  for (const auto& [name, count] : sorted)
    s += (s.empty() ? "" : " + ") + name;
  return s;
}

int64_t CheckpointFolder::total_parameters() const {
  int64_t total = 0;
  for (const auto& entry : impl_->table) {
    if (dtype_is_floating(entry.second.second->dtype)) total += entry.second.second->numel();
  }
  return total;
}

}  // namespace hedgelab::io
