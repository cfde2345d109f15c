#include "sessions/checkpoint_folders.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/common/error.h"
#include "core/data/sha256.h"

namespace hedgelab::sessions::checkpoint_folders {

namespace fs = std::filesystem;

fs::path folder_of(const fs::path& session_path) {
  return fs::path(session_path.string() + ".checkpoints");
}

std::string folder_name(int64_t sequence, const std::string& run, const std::string& stage, int64_t step) {
  const auto safe = [](std::string s) {
    for (char& c : s)
      if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.')) c = '_';
    return s.empty() ? std::string("_") : s;
  };
  char seq[32];
  std::snprintf(seq, sizeof seq, "%06lld", static_cast<long long>(sequence));
  return std::string(seq) + "-" + safe(run) + "-" + safe(stage) + "-step-" + std::to_string(step);
}

std::string sha256_of_file(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw Error(file.string(), std::string("cannot read: ") + std::strerror(errno));
  data::Sha256 h;
  std::vector<char> buffer(1 << 20);
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    h.update(buffer.data(), static_cast<size_t>(in.gcount()));
  }
  if (in.bad()) throw Error(file.string(), "read failed");
  const auto digest = h.digest();
  return data::to_hex(digest.data(), digest.size());
}

namespace {

// The sequence number a folder name starts with (temporaries: after the prefix); -1 when there is none.
int64_t sequence_in_name(std::string name) {
  if (name.rfind(kTemporaryPrefix, 0) == 0) name = name.substr(std::strlen(kTemporaryPrefix));
  size_t digits = 0;
  while (digits < name.size() && digits < 18 && std::isdigit(static_cast<unsigned char>(name[digits])))
    ++digits;
  return digits ? std::stoll(name.substr(0, digits)) : -1;
}

CheckpointInfo inspect(const fs::path& dir, const std::string& session_id, bool verify_hashes) {
  CheckpointInfo info;
  info.dir = dir;
  const std::string name = dir.filename().string();
  info.sequence = sequence_in_name(name);
  if (name.rfind(kTemporaryPrefix, 0) == 0) {
    info.problem = "unfinished: the temporary folder of an interrupted write";
    return info;
  }
  const fs::path meta_path = dir / kMetaFile;
  std::ifstream in(meta_path, std::ios::binary);
  if (!in) {
    info.problem = "no meta.json";
    return info;
  }
  nlohmann::json meta;
  try {
    meta = nlohmann::json::parse(in);
    if (meta.value("format", "") != kFormat) {
      info.problem = "meta.json: expected format \"" + std::string(kFormat) + "\"";
      return info;
    }
    info.sequence = meta.at("sequence").get<int64_t>();
    info.run = meta.at("run").get<std::string>();
    info.stage = meta.at("stage").get<std::string>();
    info.step = meta.at("step").get<int64_t>();
    info.time = meta.at("time").get<double>();
    info.sha256 = meta.at("tensors").at("sha256").get<std::string>();
    info.bytes = meta.at("tensors").at("bytes").get<uint64_t>();
    if (meta.at("session_id").get<std::string>() != session_id) {
      info.problem = "belongs to another session (session_id differs)";
      return info;
    }
  } catch (const std::exception& e) {
    std::string what = e.what();
    what = what.substr(0, what.find('\n'));
    info.problem = "meta.json does not parse: " + what;
    return info;
  }
  const fs::path tensors = dir / kTensorsFile;
  std::error_code ec;
  const uintmax_t size = fs::file_size(tensors, ec);
  if (ec) {
    info.problem = "no tensors.safetensors";
    return info;
  }
  if (size != info.bytes) {
    info.problem = "tensors.safetensors has " + std::to_string(size) + " bytes, meta.json records " +
                   std::to_string(info.bytes);
    return info;
  }
  if (verify_hashes) {
    try {
      if (sha256_of_file(tensors) != info.sha256) {
        info.problem = "tensors.safetensors does not match the SHA-256 meta.json records";
        return info;
      }
    } catch (const Error& e) {
      info.problem = e.what();
      return info;
    }
  }
  info.complete = true;
  return info;
}

}  // namespace

std::vector<CheckpointInfo> list(const fs::path& session_path, const std::string& session_id,
                                 bool verify_hashes) {
  std::vector<CheckpointInfo> out;
  const fs::path root = folder_of(session_path);
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return out;
  for (fs::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
    if (!it->is_directory(ec)) continue;
    out.push_back(inspect(it->path(), session_id, verify_hashes));
  }
  if (ec) throw Error(root.string(), "cannot list the checkpoint folders: " + ec.message());
  std::sort(out.begin(), out.end(), [](const CheckpointInfo& a, const CheckpointInfo& b) {
    return a.sequence != b.sequence ? a.sequence < b.sequence : a.dir < b.dir;
  });
  return out;
}

}  // namespace hedgelab::sessions::checkpoint_folders
