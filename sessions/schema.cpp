#include "sessions/schema.h"

#include <cstddef>
#include <type_traits>

#include "core/common/error.h"

namespace hedgelab::sessions::schema {

using snapshot::Grid;
using snapshot::ProbeSnapshot;

namespace {

class CompoundBuilder {
 public:
  explicit CompoundBuilder(size_t size)
      : type_(
            h5::type_handle(h5::check_id(H5Tcreate(H5T_COMPOUND, size), "HDF5", "cannot make a row type"))) {}
  CompoundBuilder& add(const char* name, size_t offset, hid_t type) {
    h5::check(H5Tinsert(type_.get(), name, offset, type), "HDF5", std::string("cannot add column ") + name);
    return *this;
  }
  CompoundBuilder& text(const char* name, size_t offset, size_t bytes) {
    h5::Handle t = h5::string_type(bytes);
    return add(name, offset, t.get());
  }
  h5::Handle done() { return std::move(type_); }

 private:
  h5::Handle type_;
};

}  // namespace

h5::Handle progress_type() {
  return CompoundBuilder(sizeof(ProgressRow))
      .add("steps", offsetof(ProgressRow, steps), H5T_NATIVE_INT64)
      .add("evals", offsetof(ProgressRow, evals), H5T_NATIVE_INT64)
      .add("events", offsetof(ProgressRow, events), H5T_NATIVE_INT64)
      .add("probes", offsetof(ProgressRow, probes), H5T_NATIVE_INT64)
      .add("summary_rows", offsetof(ProgressRow, summary_rows), H5T_NATIVE_INT64)
      .add("checkpoints", offsetof(ProgressRow, checkpoints), H5T_NATIVE_INT64)
      .add("state", offsetof(ProgressRow, state), H5T_NATIVE_INT32)
      .add("flushes", offsetof(ProgressRow, flushes), H5T_NATIVE_INT64)
      .add("last_flush_time", offsetof(ProgressRow, last_flush_time), H5T_NATIVE_DOUBLE)
      .done();
}

h5::Handle step_type() {
  return CompoundBuilder(sizeof(StepRow))
      .text("run", offsetof(StepRow, run), kName)
      .text("stage", offsetof(StepRow, stage), kStage)
      .add("step", offsetof(StepRow, step), H5T_NATIVE_INT64)
      .add("total_steps", offsetof(StepRow, total_steps), H5T_NATIVE_INT64)
      .add("lr", offsetof(StepRow, lr), H5T_NATIVE_DOUBLE)
      .add("total", offsetof(StepRow, total), H5T_NATIVE_DOUBLE)
      .add("grad_norm", offsetof(StepRow, grad_norm), H5T_NATIVE_DOUBLE)
      .add("tokens", offsetof(StepRow, tokens), H5T_NATIVE_INT64)
      .add("tokens_seen", offsetof(StepRow, tokens_seen), H5T_NATIVE_INT64)
      .add("tokens_per_second", offsetof(StepRow, tokens_per_second), H5T_NATIVE_DOUBLE)
      .add("wall_seconds", offsetof(StepRow, wall_seconds), H5T_NATIVE_DOUBLE)
      .add("time", offsetof(StepRow, time), H5T_NATIVE_DOUBLE)
      .done();
}

h5::Handle eval_type() {
  return CompoundBuilder(sizeof(EvalRow))
      .text("run", offsetof(EvalRow, run), kName)
      .text("stage", offsetof(EvalRow, stage), kStage)
      .add("step", offsetof(EvalRow, step), H5T_NATIVE_INT64)
      .text("name", offsetof(EvalRow, name), kName)
      .add("value", offsetof(EvalRow, value), H5T_NATIVE_DOUBLE)
      .add("time", offsetof(EvalRow, time), H5T_NATIVE_DOUBLE)
      .done();
}

h5::Handle event_type() {
  return CompoundBuilder(sizeof(EventRow))
      .add("time", offsetof(EventRow, time), H5T_NATIVE_DOUBLE)
      .text("kind", offsetof(EventRow, kind), kKind)
      .add("detail_offset", offsetof(EventRow, detail_offset), H5T_NATIVE_INT64)
      .add("detail_length", offsetof(EventRow, detail_length), H5T_NATIVE_INT64)
      .done();
}

h5::Handle summary_type() {
  return CompoundBuilder(sizeof(SummaryRow))
      .add("generation", offsetof(SummaryRow, generation), H5T_NATIVE_INT64)
      .text("run", offsetof(SummaryRow, run), kName)
      .add("perplexity", offsetof(SummaryRow, perplexity), H5T_NATIVE_DOUBLE)
      .add("ratio_to_teacher", offsetof(SummaryRow, ratio_to_teacher), H5T_NATIVE_DOUBLE)
      .add("stage1_tokens", offsetof(SummaryRow, stage1_tokens), H5T_NATIVE_INT64)
      .add("stage2_tokens", offsetof(SummaryRow, stage2_tokens), H5T_NATIVE_INT64)
      .add("steps", offsetof(SummaryRow, steps), H5T_NATIVE_INT64)
      .add("seconds", offsetof(SummaryRow, seconds), H5T_NATIVE_DOUBLE)
      .add("stopped_early", offsetof(SummaryRow, stopped_early), H5T_NATIVE_INT8)
      .add("time", offsetof(SummaryRow, time), H5T_NATIVE_DOUBLE)
      .done();
}

h5::Handle checkpoint_type() {
  return CompoundBuilder(sizeof(CheckpointRow))
      .add("sequence", offsetof(CheckpointRow, sequence), H5T_NATIVE_INT64)
      .text("run", offsetof(CheckpointRow, run), kName)
      .text("stage", offsetof(CheckpointRow, stage), kStage)
      .add("step", offsetof(CheckpointRow, step), H5T_NATIVE_INT64)
      .add("time", offsetof(CheckpointRow, time), H5T_NATIVE_DOUBLE)
      .text("dir", offsetof(CheckpointRow, dir), kDir)
      .text("sha256", offsetof(CheckpointRow, sha256), kHash)
      .add("bytes", offsetof(CheckpointRow, bytes), H5T_NATIVE_INT64)
      .done();
}

const ProbeFieldInfo& probe_field(int field) {
  static const ProbeFieldInfo fields[kProbeFieldCount] = {
      {"alignment", true, false},          {"head_stats", true, false},
      {"attention_teacher", false, true},  {"attention_student", false, false},
      {"teacher_logits", false, true},     {"feature_logits", false, false},
      {"feature_q", false, false},         {"feature_k", false, false},
      {"mixer_delta", false, false},       {"mixer_alpha", false, false},
      {"mixer_gate", false, false},        {"mixer_state_norm", false, false},
      {"mixer_final_state", false, false}, {"mixer_conv_x", false, false},
      {"mixer_conv_k", false, false},      {"mixer_conv_q", false, false},
  };
  return fields[field];
}

std::vector<hsize_t> probe_field_dims(int field, const SessionLayout& lay) {
  const auto u = [](int64_t v) { return static_cast<hsize_t>(v < 0 ? 0 : v); };
  const hsize_t L = u(lay.layers), H = u(lay.heads), Tp = u(lay.probe_tokens), m = u(lay.feature_dim),
                P = u(lay.head_size), N = u(lay.state_size), d = u(lay.width), W = u(lay.conv_width);
  switch (field) {
    case kAlignment:
      return {L, 2};
    case kHeadStats:
      return {L, H, 4};
    case kAttentionTeacher:
    case kAttentionStudent:
      return {L, H, Tp, Tp};
    case kTeacherLogits:
    case kFeatureLogits:
      return {L, H, Tp * (Tp + 1) / 2};
    case kFeatureQ:
    case kFeatureK:
      return {L, H, m, P};
    case kMixerDelta:
    case kMixerAlpha:
    case kMixerStateNorm:
      return {L, H, Tp};
    case kMixerGate:
      return {L, Tp, d};
    case kMixerFinalState:
      return {L, H, N, P};
    case kMixerConvX:
    case kMixerConvK:
    case kMixerConvQ:
      return {L, d, W};
    default:
      return {};
  }
}

h5::Handle probe_index_type() {
  CompoundBuilder b(sizeof(ProbeIndexRow));
  b.text("run", offsetof(ProbeIndexRow, run), kName)
      .text("stage", offsetof(ProbeIndexRow, stage), kStage)
      .add("step", offsetof(ProbeIndexRow, step), H5T_NATIVE_INT64)
      .add("tokens_seen", offsetof(ProbeIndexRow, tokens_seen), H5T_NATIVE_INT64)
      .add("layers", offsetof(ProbeIndexRow, layers), H5T_NATIVE_INT64)
      .add("heads", offsetof(ProbeIndexRow, heads), H5T_NATIVE_INT64)
      .add("n_alignment", offsetof(ProbeIndexRow, n_alignment), H5T_NATIVE_INT64)
      .add("n_attention", offsetof(ProbeIndexRow, n_attention), H5T_NATIVE_INT64)
      .add("n_features", offsetof(ProbeIndexRow, n_features), H5T_NATIVE_INT64)
      .add("n_mixers", offsetof(ProbeIndexRow, n_mixers), H5T_NATIVE_INT64)
      .add("tokens_row", offsetof(ProbeIndexRow, tokens_row), H5T_NATIVE_INT64)
      .add("time", offsetof(ProbeIndexRow, time), H5T_NATIVE_DOUBLE);
  for (int f = 0; f < kProbeFieldCount; ++f) {
    const std::string column = std::string("row_") + probe_field(f).name;
    b.add(column.c_str(), offsetof(ProbeIndexRow, rows) + sizeof(int64_t) * static_cast<size_t>(f),
          H5T_NATIVE_INT64);
  }
  return b.done();
}

namespace {

// The expected shape of one element of a field: `count` grids (or vectors, cols = 0) of rows × cols.
struct Shape {
  int64_t count = 1;
  int64_t rows = 0;
  int64_t cols = 0;
};

// Calls f(element, shape, index) on every element of `field` in storage order. The element is a Grid, a
// std::vector<float> (a triangle of logits) or a std::vector<Grid> (one grid per head).
template <class Snap, class F>
void for_each_element(int field, Snap& s, const SessionLayout& lay, F&& f) {
  const int64_t H = lay.heads, Tp = lay.probe_tokens, m = lay.feature_dim, P = lay.head_size,
                N = lay.state_size, d = lay.width, W = lay.conv_width;
  const int64_t pairs = Tp * (Tp + 1) / 2;
  const auto heads = [&](auto member, Shape shape) {
    for (size_t i = 0; i < s.attention.size(); ++i)
      f(s.attention[i].*member, shape, static_cast<int64_t>(i));
  };
  const auto features = [&](auto member) {
    for (size_t l = 0; l < s.features.size(); ++l)
      f(s.features[l].*member, Shape{H, m, P}, static_cast<int64_t>(l));
  };
  const auto mixers = [&](auto member, Shape shape) {
    for (size_t l = 0; l < s.mixers.size(); ++l)
      f(s.mixers[l].*member, shape, static_cast<int64_t>(l));
  };
  using snapshot::FeatureMapWeights;
  using snapshot::HeadAttention;
  using snapshot::MixerInternals;
  switch (field) {
    case kAttentionTeacher:
      heads(&HeadAttention::teacher, Shape{1, Tp, Tp});
      break;
    case kAttentionStudent:
      heads(&HeadAttention::student, Shape{1, Tp, Tp});
      break;
    case kTeacherLogits:
      heads(&HeadAttention::teacher_logits, Shape{1, pairs, 0});
      break;
    case kFeatureLogits:
      heads(&HeadAttention::feature_logits, Shape{1, pairs, 0});
      break;
    case kFeatureQ:
      features(&FeatureMapWeights::q);
      break;
    case kFeatureK:
      features(&FeatureMapWeights::k);
      break;
    case kMixerDelta:
      mixers(&MixerInternals::delta, Shape{1, H, Tp});
      break;
    case kMixerAlpha:
      mixers(&MixerInternals::alpha, Shape{1, H, Tp});
      break;
    case kMixerGate:
      mixers(&MixerInternals::gate, Shape{1, Tp, d});
      break;
    case kMixerStateNorm:
      mixers(&MixerInternals::state_norm, Shape{1, H, Tp});
      break;
    case kMixerFinalState:
      mixers(&MixerInternals::final_state, Shape{H, N, P});
      break;
    case kMixerConvX:
      mixers(&MixerInternals::conv_x, Shape{1, d, W});
      break;
    case kMixerConvK:
      mixers(&MixerInternals::conv_k, Shape{1, d, W});
      break;
    case kMixerConvQ:
      mixers(&MixerInternals::conv_q, Shape{1, d, W});
      break;
    default:
      break;
  }
}

bool per_head_field(int field) {
  return field == kAttentionTeacher || field == kAttentionStudent || field == kTeacherLogits ||
         field == kFeatureLogits;
}

std::string element_label(int field, int64_t index, const SessionLayout& lay) {
  if (per_head_field(field) && lay.heads > 0)
    return "layer " + std::to_string(index / lay.heads) + " head " + std::to_string(index % lay.heads);
  return "layer " + std::to_string(index);
}

std::string shape_text(const Shape& s) {
  std::string one = s.cols == 0 ? std::to_string(s.rows) + " values"
                                : "[" + std::to_string(s.rows) + ", " + std::to_string(s.cols) + "]";
  return s.count == 1 ? one : std::to_string(s.count) + " × " + one;
}

// A grid is empty when it is the default 0 × 0 one; a grid whose values disagree with rows · cols is
// malformed and refused rather than stored inexactly.
bool grid_empty(const Grid& g, const std::string& where) {
  if (static_cast<int64_t>(g.values.size()) != g.rows * g.cols || (g.values.empty() && (g.rows || g.cols)))
    throw Error(where, "malformed grid: " + std::to_string(g.rows) + " × " + std::to_string(g.cols) +
                           " with " + std::to_string(g.values.size()) + " values");
  return g.values.empty();
}

bool grid_matches(const Grid& g, const Shape& s) {
  return g.rows == s.rows && g.cols == s.cols;
}

}  // namespace

void count_snapshot(const ProbeSnapshot& s, const SessionLayout& lay, ProbeIndexRow& row,
                    const std::string& where) {
  const auto sized = [&](size_t n, int64_t expected, const char* what) {
    if (n != 0 && static_cast<int64_t>(n) != expected)
      throw Error(where, std::string(what) + ": expected 0 or " + std::to_string(expected) +
                             " entries, got " + std::to_string(n));
    return static_cast<int64_t>(n);
  };
  row.n_alignment = sized(s.alignment.size(), lay.layers, "alignment");
  row.n_attention = sized(s.attention.size(), lay.layers * lay.heads, "attention");
  row.n_features = sized(s.features.size(), lay.layers, "features");
  row.n_mixers = sized(s.mixers.size(), lay.layers, "mixers");
  sized(s.tokens.size(), lay.probe_tokens, "tokens");
}

void size_snapshot(ProbeSnapshot& s, const ProbeIndexRow& row, const SessionLayout&) {
  s.layers = row.layers;
  s.heads = row.heads;
  s.alignment.assign(static_cast<size_t>(row.n_alignment), {});
  s.attention.assign(static_cast<size_t>(row.n_attention), {});
  s.features.assign(static_cast<size_t>(row.n_features), {});
  s.mixers.assign(static_cast<size_t>(row.n_mixers), {});
}

bool carries_probe_field(int field, const ProbeSnapshot& s, const SessionLayout& lay) {
  if (field == kAlignment) return !s.alignment.empty();
  if (field == kHeadStats) return !s.attention.empty();
  bool any = false;
  for_each_element(field, s, lay, [&](const auto& e, const Shape&, int64_t) { any = any || !e.empty(); });
  return any;
}

bool gather_probe_field(int field, const ProbeSnapshot& s, const SessionLayout& lay, std::vector<double>& out,
                        const std::string& where_in) {
  out.clear();
  const std::string where = where_in + ": " + probe_field(field).name;
  if (field == kAlignment) {
    for (const auto& a : s.alignment) {
      out.push_back(a.teacher_forced);
      out.push_back(a.free_running);
    }
    return !s.alignment.empty();
  }
  if (field == kHeadStats) {
    for (const auto& a : s.attention)
      out.insert(out.end(), {a.teacher_entropy, a.student_entropy, a.row_kl, a.spearman});
    return !s.attention.empty();
  }
  int64_t present = 0, absent = 0;
  for_each_element(field, s, lay, [&](const auto& e, const Shape&, int64_t i) {
    using E = std::decay_t<decltype(e)>;
    bool empty = e.empty();
    if constexpr (std::is_same_v<E, Grid>) empty = grid_empty(e, where + " " + element_label(field, i, lay));
    (empty ? absent : present) += 1;
  });
  if (present == 0) return false;
  if (absent > 0)
    throw Error(where, std::to_string(absent) + " of " + std::to_string(absent + present) +
                           " entries are empty; expected all or none");
  for_each_element(field, s, lay, [&](const auto& e, const Shape& shape, int64_t i) {
    using E = std::decay_t<decltype(e)>;
    const auto wrong = [&](const std::string& got) {
      return Error(where + " " + element_label(field, i, lay),
                   "expected " + shape_text(shape) + " (the session layout), got " + got);
    };
    if constexpr (std::is_same_v<E, Grid>) {
      if (!grid_matches(e, shape)) throw wrong(shape_text(Shape{1, e.rows, e.cols}));
      out.insert(out.end(), e.values.begin(), e.values.end());
    } else if constexpr (std::is_same_v<E, std::vector<float>>) {
      if (static_cast<int64_t>(e.size()) != shape.rows) throw wrong(std::to_string(e.size()) + " values");
      out.insert(out.end(), e.begin(), e.end());
    } else {
      if (static_cast<int64_t>(e.size()) != shape.count) throw wrong(std::to_string(e.size()) + " grids");
      for (const Grid& g : e) {
        grid_empty(g, where + " " + element_label(field, i, lay));
        if (!grid_matches(g, shape)) throw wrong("a grid of " + shape_text(Shape{1, g.rows, g.cols}));
        out.insert(out.end(), g.values.begin(), g.values.end());
      }
    }
  });
  return true;
}

void scatter_probe_field(int field, ProbeSnapshot& s, const SessionLayout& lay,
                         const std::vector<double>& v) {
  size_t at = 0;
  const auto take_grid = [&](Grid& g, int64_t rows, int64_t cols) {
    g = Grid(rows, cols);
    for (float& x : g.values)
      x = static_cast<float>(v[at++]);
  };
  if (field == kAlignment) {
    for (auto& a : s.alignment) {
      a.teacher_forced = v[at++];
      a.free_running = v[at++];
    }
    return;
  }
  if (field == kHeadStats) {
    for (auto& a : s.attention) {
      a.teacher_entropy = v[at++];
      a.student_entropy = v[at++];
      a.row_kl = v[at++];
      a.spearman = v[at++];
    }
    return;
  }
  for_each_element(field, s, lay, [&](auto& e, const Shape& shape, int64_t) {
    using E = std::decay_t<decltype(e)>;
    if constexpr (std::is_same_v<E, Grid>) {
      take_grid(e, shape.rows, shape.cols);
    } else if constexpr (std::is_same_v<E, std::vector<float>>) {
      e.resize(static_cast<size_t>(shape.rows));
      for (float& x : e)
        x = static_cast<float>(v[at++]);
    } else {
      e.resize(static_cast<size_t>(shape.count));
      for (Grid& g : e)
        take_grid(g, shape.rows, shape.cols);
    }
  });
}

}  // namespace hedgelab::sessions::schema
