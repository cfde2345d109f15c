#include "sessions/checkpoints.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <random>
#include <set>

#include "core/common/error.h"
#include "core/io/safetensors.h"
#include "core/io/safetensors_torch.h"
#include "core/util/atomic_file.h"
#include "sessions/checkpoint_folders.h"
#include "sessions/session_reader.h"

namespace hedgelab::sessions {

namespace fs = std::filesystem;

namespace {

void fsync_directory(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;  // best effort where folders cannot be opened
  ::fsync(fd);
  ::close(fd);
}

}  // namespace

namespace checkpoint_folders {

CheckpointInfo write(const fs::path& session_path, const std::string& session_id, int64_t sequence,
                     const CheckpointRecord& record, int keep) {
  const fs::path root = folder_of(session_path);
  const fs::path final_dir = root / folder_name(sequence, record.run, record.stage, record.step);
  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec) throw Error(root.string(), "cannot create the checkpoint folder: " + ec.message());
  if (fs::exists(final_dir, ec)) throw Error(final_dir.string(), "exists already; refusing to replace it");
  std::random_device rd;
  const fs::path tmp = root / (kTemporaryPrefix + std::to_string(sequence) + "-" +
                               std::to_string(::getpid()) + "-" + std::to_string(rd()));
  CheckpointInfo info;
  try {
    if (!fs::create_directory(tmp, ec) || ec)
      throw Error(final_dir.string(), "cannot create a temporary folder: " + ec.message());
    const fs::path tensors = tmp / kTensorsFile;
    io::save_safetensors(
        tensors, record.tensors,
        {{"run", record.run}, {"stage", record.stage}, {"step", std::to_string(record.step)}});
    info.sha256 = sha256_of_file(tensors);
    info.bytes = fs::file_size(tensors);
    info.time = unix_now();
    nlohmann::json order = nlohmann::json::array();
    for (const auto& [name, tensor] : record.tensors)
      order.push_back(name);
    const nlohmann::json meta = {
        {"format", kFormat},
        {"version", 1},
        {"session_id", session_id},
        {"sequence", sequence},
        {"run", record.run},
        {"stage", record.stage},
        {"step", record.step},
        {"time", info.time},
        {"time_utc", iso8601_utc(info.time)},
        {"tensors",
         {{"file", kTensorsFile}, {"sha256", info.sha256}, {"bytes", info.bytes}, {"order", order}}},
        {"meta", record.meta}};
    util::write_file_atomically(tmp / kMetaFile,
                                meta.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
    fsync_directory(tmp);
    fs::rename(tmp, final_dir, ec);
    if (ec)
      throw Error(final_dir.string(), "cannot move the finished checkpoint into place: " + ec.message());
    fsync_directory(root);
  } catch (const Error& e) {
    fs::remove_all(tmp, ec);
    throw Error(final_dir.string(), std::string("cannot write the checkpoint: ") + e.what());
  } catch (const std::exception& e) {
    fs::remove_all(tmp, ec);
    std::string what = e.what();
    throw Error(final_dir.string(), "cannot write the checkpoint: " + what.substr(0, what.find('\n')));
  }
  info.dir = final_dir;
  info.sequence = sequence;
  info.run = record.run;
  info.stage = record.stage;
  info.step = record.step;
  info.complete = true;

  // Retention: the newest `keep` complete folders stay; torn, temporary and foreign folders and older ones
  // go.
  const std::vector<CheckpointInfo> all = list(session_path, session_id, false);
  size_t complete_seen = 0;
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    if (it->complete && complete_seen < static_cast<size_t>(std::max(keep, 1))) {
      ++complete_seen;
      continue;
    }
    fs::remove_all(it->dir, ec);
  }
  return info;
}

}  // namespace checkpoint_folders

CheckpointRecord load_checkpoint(const CheckpointInfo& info) {
  const std::string where = info.dir.string();
  if (!info.complete) throw Error(where, "not a complete checkpoint: " + info.problem);
  const fs::path tensors_path = info.dir / checkpoint_folders::kTensorsFile;
  if (checkpoint_folders::sha256_of_file(tensors_path) != info.sha256)
    throw Error(where, "tensors.safetensors does not match the SHA-256 meta.json records");
  std::ifstream in(info.dir / checkpoint_folders::kMetaFile, std::ios::binary);
  nlohmann::json meta;
  CheckpointRecord record;
  std::vector<std::string> order;
  try {
    meta = nlohmann::json::parse(in);
    record.run = meta.at("run").get<std::string>();
    record.stage = meta.at("stage").get<std::string>();
    record.step = meta.at("step").get<int64_t>();
    record.meta = meta.value("meta", nlohmann::json::object());
    order = meta.at("tensors").at("order").get<std::vector<std::string>>();
  } catch (const std::exception& e) {
    std::string what = e.what();
    throw Error(where + "/meta.json", "does not parse: " + what.substr(0, what.find('\n')));
  }
  const io::SafetensorsFile file = io::SafetensorsFile::open(tensors_path);
  if (order.size() != file.tensors().size() ||
      std::set<std::string>(order.begin(), order.end()).size() != order.size())
    throw Error(where, "meta.json lists " + std::to_string(order.size()) +
                           " tensors, tensors.safetensors holds " + std::to_string(file.tensors().size()));
  for (const std::string& name : order) {
    const io::TensorInfo* t = file.find(name);
    if (!t) throw Error(tensors_path.string(), "tensor '" + name + "' listed in meta.json is missing");
    record.tensors.emplace_back(
        name, io::read_tensor(file, *t, io::scalar_type_of(t->dtype, tensors_path.string() + ": " + name)));
  }
  return record;
}

std::optional<CheckpointRecord> load_last_complete_checkpoint(const SessionReader& reader,
                                                              const std::string& run) {
  std::vector<CheckpointInfo> all = reader.checkpoints(false);
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    if (!it->complete || (!run.empty() && it->run != run)) continue;
    try {
      return load_checkpoint(*it);
    } catch (const Error&) {
      // A damaged newest checkpoint: fall back to the one before it.
    }
  }
  return std::nullopt;
}

}  // namespace hedgelab::sessions
