// The plain values a session holds besides the snapshot structs of core/snapshot: the shapes a run fixes up
// front (SessionLayout), where a run comes from (Provenance), checkpoints, events, and what a reader lists.
// docs/session-format.md describes how each is stored. Neither HDF5 nor LibTorch types here (checkpoint
// tensors: sessions/checkpoints.h).
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace hedgelab::sessions {

// The session format's version (the root attribute `schema_version`). A reader opens every version up to
// this one and refuses newer files.
inline constexpr int kSchemaVersion = 1;

// Longest names (bytes) the fixed-length string columns hold; longer ones are refused when written.
inline constexpr size_t kMaxNameBytes = 63;   // run, loss part, evaluation metric
inline constexpr size_t kMaxStageBytes = 15;  // "stage1", "stage2"

// Shapes fixed for the whole session, known when it is created (symbols: docs/architecture.md, "Shapes").
// Probe snapshots are stored in datasets of these shapes; loss parts are the columns of the step table.
struct SessionLayout {
  int64_t layers = 0;                   // L
  int64_t heads = 0;                    // H
  int64_t probe_tokens = 0;             // Tp, tokens of the probe text; 0: no probe snapshots
  int64_t feature_dim = 0;              // m, rows of a feature map W_q/W_k per head
  int64_t head_size = 0;                // P = d/H
  int64_t state_size = 0;               // N = 2m, rows of the mixer state S_t per head
  int64_t width = 0;                    // d
  int64_t conv_width = 0;               // W, taps of the mixer's convolutions; 0: no convolutions
  std::vector<std::string> part_names;  // every loss part a StepReport may carry, in column order

  void validate(const std::string& where) const;  // Error(where, field) on a negative size or a bad name
};

// The loss part names of the two stages (core/distill/stages.cpp) for L layers: cosine.layers.i and
// attn_ce.layers.i (stage 1), ce, kd and align.layers.i (stage 2).
std::vector<std::string> standard_part_names(int64_t layers);

// Where a session comes from. The caller fills it; make_provenance() fills the versions and the start time.
struct Provenance {
  std::string app_version;    // HEDGELAB_VERSION
  std::string torch_version;  // TORCH_VERSION
  std::string hdf5_version;   // the library that wrote the file; the writer fills it when empty
  std::string device;         // "cpu", "cuda:0 (NVIDIA H100)", …
  nlohmann::json recipe = nlohmann::json::object();  // the full recipe, as the run used it
  std::string teacher_dir;
  std::string teacher_hash;  // hash of the teacher's weights (e.g. sha256 of model.safetensors)
  std::string corpus_path;
  std::string corpus_hash;
  uint64_t seed = 0;
  std::string start_time;  // ISO 8601 UTC, "2024-05-01T12:34:56Z"
};

Provenance make_provenance();  // app, LibTorch and HDF5 versions, start time now; the rest left empty
std::string iso8601_utc(double unix_seconds);
double unix_now();  // seconds since 1970-01-01 UTC

// The event kinds append_event() accepts.
inline const std::vector<std::string>& event_kinds() {
  static const std::vector<std::string> kinds = {
      "start", "pause", "resume", "knob", "stop", "error", "finish", "notice", "resume_from_checkpoint"};
  return kinds;
}

struct Event {
  double time = 0.0;  // seconds since 1970-01-01 UTC
  std::string kind;
  nlohmann::json detail;
};

// One checkpoint folder beside the session, as found on disk.
struct CheckpointInfo {
  std::filesystem::path dir;
  int64_t sequence = 0;  // order of writing within the session
  std::string run, stage;
  int64_t step = 0;
  double time = 0.0;      // when it was written (unix seconds)
  std::string sha256;     // of tensors.safetensors, as meta.json records it
  uint64_t bytes = 0;     // size of tensors.safetensors
  bool complete = false;  // meta.json parses, belongs to this session, the tensors file has the recorded size
                          // (and hash, when verified)
  std::string problem;    // why not complete
};

// How the writer left the session.
enum class SessionState {
  Complete,   // close() was called: the run ended and everything was written
  Abandoned,  // the writer closed the file without close() (an error or a stop ended the run early)
  Live,       // the writer process still runs on this host
  Crashed,    // the writer process is gone without closing the file (killed, crashed, power lost)
};
const char* to_string(SessionState state);  // "complete", "abandoned", "live", "crashed"

}  // namespace hedgelab::sessions
