// Internal to sessions/: the layout of a session file (docs/session-format.md) in one place, shared by the
// writer and the reader: object names, the rows of each table as C structs with their HDF5 compound types,
// and the probe snapshot fields with how each is copied out of and back into a snapshot::ProbeSnapshot.
#pragma once

#include <hdf5.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "core/snapshot/probe_snapshot.h"
#include "sessions/hdf5_support.h"
#include "sessions/session_types.h"

namespace hedgelab::sessions::schema {

inline constexpr const char* kFormatName = "hedgelab-session";

// Where each object lives.
inline constexpr const char* kProgress = "/session/progress";
inline constexpr const char* kRecipe = "/provenance/recipe_json";
inline constexpr const char* kSteps = "/metrics/steps";
inline constexpr const char* kParts = "/metrics/parts";
inline constexpr const char* kPartNames = "/metrics/part_names";
inline constexpr const char* kEvals = "/metrics/evals";
inline constexpr const char* kEvents = "/events/index";
inline constexpr const char* kEventDetail = "/events/detail_json";
inline constexpr const char* kProbeIndex = "/probes/index";
inline constexpr const char* kTokenOffsets = "/probes/token_offsets";
inline constexpr const char* kTokenBytes = "/probes/token_bytes";
inline constexpr const char* kSummary = "/summary/rows";
inline constexpr const char* kCheckpointIndex = "/checkpoints/index";
inline std::string probe_path(const char* field) {
  return std::string("/probes/") + field;
}

// Fixed-length string columns (bytes, including the terminating zero the writer always leaves).
inline constexpr size_t kName = kMaxNameBytes + 1;
inline constexpr size_t kStage = kMaxStageBytes + 1;
inline constexpr size_t kKind = 32;
inline constexpr size_t kDir = 128;
inline constexpr size_t kHash = 65;

// What the writer left in /session/progress: the committed row counts (rows past them may be half-written)
// and how the writer left the file.
enum WriterState : int32_t { kOpen = 0, kComplete = 1, kAbandoned = 2 };

struct ProgressRow {
  int64_t steps = 0, evals = 0, events = 0, probes = 0, summary_rows = 0, checkpoints = 0;
  int32_t state = kOpen;
  int64_t flushes = 0;
  double last_flush_time = 0.0;  // unix seconds
};

struct StepRow {
  char run[kName];
  char stage[kStage];
  int64_t step, total_steps;
  double lr, total, grad_norm;
  int64_t tokens, tokens_seen;
  double tokens_per_second, wall_seconds, time;
};

// The members a StepRow shares with a snapshot::StepReport, copied either way (the writer fills a row from a
// report, the reader a report from a row); names, parts and times are the caller's.
template <class From, class To>
void copy_step_fields(const From& from, To& to) {
  to.step = from.step;
  to.total_steps = from.total_steps;
  to.lr = from.lr;
  to.total = from.total;
  to.grad_norm = from.grad_norm;
  to.tokens = from.tokens;
  to.tokens_seen = from.tokens_seen;
  to.tokens_per_second = from.tokens_per_second;
}

struct EvalRow {
  char run[kName];
  char stage[kStage];
  int64_t step;
  char name[kName];
  double value, time;
};

struct EventRow {
  double time;
  char kind[kKind];
  int64_t detail_offset, detail_length;  // bytes of /events/detail_json
};

struct SummaryRow {
  int64_t generation;  // rows of the newest generation are the table set_summary() last wrote
  char run[kName];
  double perplexity, ratio_to_teacher;
  int64_t stage1_tokens, stage2_tokens, steps;
  double seconds;
  int8_t stopped_early;
  double time;
};

// The members a SummaryRow shares with a snapshot::RunSummary, copied either way; the run name, generation
// and time are the caller's.
template <class From, class To>
void copy_summary_fields(const From& from, To& to) {
  to.perplexity = from.perplexity;
  to.ratio_to_teacher = from.ratio_to_teacher;
  to.stage1_tokens = from.stage1_tokens;
  to.stage2_tokens = from.stage2_tokens;
  to.steps = from.steps;
  to.seconds = from.seconds;
  to.stopped_early = static_cast<decltype(to.stopped_early)>(from.stopped_early ? 1 : 0);  // int8 ↔ bool
}

struct CheckpointRow {
  int64_t sequence;
  char run[kName];
  char stage[kStage];
  int64_t step;
  double time;
  char dir[kDir];  // folder name inside <session>.checkpoints/
  char sha256[kHash];
  int64_t bytes;
};

// Probe snapshot fields, each a dataset /probes/<name> of shape [rows, per-snapshot shape...].
enum ProbeField : int {
  kAlignment,         // [L, 2] f64: teacher_forced, free_running
  kHeadStats,         // [L, H, 4] f64: teacher_entropy, student_entropy, row_kl, spearman
  kAttentionTeacher,  // [L, H, Tp, Tp] f32, shared between snapshots when equal
  kAttentionStudent,  // [L, H, Tp, Tp] f32
  kTeacherLogits,     // [L, H, Tp(Tp+1)/2] f32, shared between snapshots when equal
  kFeatureLogits,     // [L, H, Tp(Tp+1)/2] f32
  kFeatureQ,          // [L, H, m, P] f32
  kFeatureK,          // [L, H, m, P] f32
  kMixerDelta,        // [L, H, Tp] f32
  kMixerAlpha,        // [L, H, Tp] f32
  kMixerGate,         // [L, Tp, d] f32
  kMixerStateNorm,    // [L, H, Tp] f32
  kMixerFinalState,   // [L, H, N, P] f32
  kMixerConvX,        // [L, d, W] f32
  kMixerConvK,        // [L, d, W] f32
  kMixerConvQ,        // [L, d, W] f32
  kProbeFieldCount
};

struct ProbeFieldInfo {
  const char* name;
  bool f64;     // float64 (the struct's doubles) or float32 (grid values)
  bool shared;  // the teacher's side: a snapshot equal to the last stored row points at it
};
const ProbeFieldInfo& probe_field(int field);
// The per-snapshot shape of a field under `layout`; a field with a zero in it has no dataset.
std::vector<hsize_t> probe_field_dims(int field, const SessionLayout& layout);

struct ProbeIndexRow {
  char run[kName];
  char stage[kStage];
  int64_t step, tokens_seen, layers, heads;
  // Sizes of the snapshot's vectors: alignment (0 or L), attention (0 or L·H), features (0 or L), mixers (0
  // or L); field rows of -1 mean "empty in every element".
  int64_t n_alignment, n_attention, n_features, n_mixers;
  int64_t tokens_row;  // row of /probes/token_offsets, -1: no token labels
  double time;
  int64_t rows[kProbeFieldCount];  // row of /probes/<field>, -1: absent
};

// HDF5 compound types of the rows above (memory layout = the struct; the file stores the same members).
h5::Handle progress_type();
h5::Handle step_type();
h5::Handle eval_type();
h5::Handle event_type();
h5::Handle summary_type();
h5::Handle checkpoint_type();
h5::Handle probe_index_type();

// Whether `s` carries field `field` at all (some element not empty), shapes unchecked.
bool carries_probe_field(int field, const snapshot::ProbeSnapshot& s, const SessionLayout& layout);
// Copies field `field` of `s` into `out` (row-major in the field's shape) and returns true, or returns false
// when the snapshot does not carry it (every element empty). Throws Error(where, ...) naming the field and
// the expected shape when the snapshot carries it only partly or in another shape.
bool gather_probe_field(int field, const snapshot::ProbeSnapshot& s, const SessionLayout& layout,
                        std::vector<double>& out, const std::string& where);
// The reverse: fills the field's elements of `s` (whose vectors already have the stored sizes) from `values`.
void scatter_probe_field(int field, snapshot::ProbeSnapshot& s, const SessionLayout& layout,
                         const std::vector<double>& values);
// Sizes the snapshot's vectors from the index row (the elements' fields stay empty).
void size_snapshot(snapshot::ProbeSnapshot& s, const ProbeIndexRow& row, const SessionLayout& layout);
// Counts for the index row; Error(where, ...) when a vector has neither 0 nor the layout's size.
void count_snapshot(const snapshot::ProbeSnapshot& s, const SessionLayout& layout, ProbeIndexRow& row,
                    const std::string& where);

}  // namespace hedgelab::sessions::schema
