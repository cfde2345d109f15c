// Internal to sessions/: the checkpoint folders beside a session, torch-free (listing and checking them);
// writing and loading tensors is sessions/checkpoints.cpp.
//   <session>.checkpoints/<sequence>-<run>-<stage>-step-<step>/{tensors.safetensors, meta.json}
// A folder appears under its final name only by a rename of a finished, fsynced temporary folder
// (.tmp-<sequence>-<pid>-<random>), so a crash leaves either a complete folder or a temporary one.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "sessions/session_types.h"

namespace hedgelab::sessions {
struct CheckpointRecord;
}

namespace hedgelab::sessions::checkpoint_folders {

inline constexpr const char* kTensorsFile = "tensors.safetensors";
inline constexpr const char* kMetaFile = "meta.json";
inline constexpr const char* kFormat = "hedgelab-checkpoint";
inline constexpr const char* kTemporaryPrefix = ".tmp-";

std::filesystem::path folder_of(const std::filesystem::path& session_path);  // "<session>.checkpoints"
std::string folder_name(int64_t sequence, const std::string& run, const std::string& stage, int64_t step);

// Every folder (complete or not, temporaries included), oldest first. A folder is complete when its meta.json
// parses as this session's checkpoint and its tensors file has the recorded size, and, with `verify_hashes`,
// the recorded SHA-256.
std::vector<CheckpointInfo> list(const std::filesystem::path& session_path, const std::string& session_id,
                                 bool verify_hashes);
// Writes `record` as folder number `sequence` (temporary folder, fsync, rename), then removes every folder
// but the newest `keep` complete ones of this session (torn, temporary, foreign and older folders go). Error
// naming the folder on failure; earlier folders are untouched then. (sessions/checkpoints.cpp)
CheckpointInfo write(const std::filesystem::path& session_path, const std::string& session_id,
                     int64_t sequence, const CheckpointRecord& record, int keep);

// Hex SHA-256 of a file's bytes; Error naming it when it cannot be read.
std::string sha256_of_file(const std::filesystem::path& file);

}  // namespace hedgelab::sessions::checkpoint_folders
