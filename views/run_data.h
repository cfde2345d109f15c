// The UI thread's copy of what one run reported — live from the worker, or read from a session — as series
// over a global step axis (stage 1's steps, then stage 2's continuing after them). Appending is cheap and
// bumps a revision; views redraw on their own timer when the revision moved, never per message. Plain data:
// no LibTorch, no locks (it lives on the UI thread only).
#pragma once

#include <QString>
#include <QVector>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/snapshot/probe_snapshot.h"
#include "core/snapshot/run_reports.h"

namespace hedgelab::views {

struct Series {
  QVector<double> x;  // global step
  QVector<double> y;
};

// One probe snapshot and where it sits on the global step axis.
struct SnapshotEntry {
  double x = 0.0;
  std::shared_ptr<const snapshot::ProbeSnapshot> snapshot;  // null until loaded (sessions load lazily)
  std::string stage;
  int64_t step = 0;
  int64_t index = -1;  // the session's snapshot index, when read from a session
  std::vector<snapshot::LayerAlignment> alignment;
};

class RunData {
 public:
  QString title;  // the session's file name or "live run"

  void clear();
  // Steps of each stage, so stage 2's steps continue after stage 1's on the global axis.
  void set_stage_steps(int64_t stage1_steps, int64_t stage2_steps);
  int64_t stage1_steps() const { return stage1_steps_; }
  int64_t total_steps() const { return stage1_steps_ + stage2_steps_; }
  double global_step(const std::string& stage, int64_t step) const;

  void add_step(const std::string& stage, const snapshot::StepReport& report, double wall_seconds = -1.0);
  void add_eval(const std::string& stage, const snapshot::EvalReport& report);
  void add_snapshot(SnapshotEntry entry);
  void set_snapshot(size_t i, std::shared_ptr<const snapshot::ProbeSnapshot> snapshot);
  void set_summary(std::vector<snapshot::RunSummary> rows);

  // Step metrics by name: "total", "lr", "grad_norm", "tokens_per_second", "tokens_seen", and every loss
  // part ("ce", "kd", "cosine.layers.3", …). Empty series for an unknown name.
  const Series& metric(const std::string& name) const;
  std::vector<std::string> metric_names() const;
  std::vector<std::string> loss_part_names() const;
  // Evaluation metrics: "heldout_perplexity", "teacher_heldout_perplexity".
  const Series& eval(const std::string& name) const;
  std::vector<std::string> eval_names() const;
  const std::vector<SnapshotEntry>& snapshots() const { return snapshots_; }
  const std::vector<snapshot::RunSummary>& summary() const { return summary_; }
  const snapshot::StepReport& last_step() const { return last_step_; }
  const std::string& last_stage() const { return last_stage_; }
  int64_t steps_received() const { return steps_received_; }

  // Moves on every change; a view remembers the revision it drew.
  uint64_t revision() const { return revision_; }

 private:
  int64_t stage1_steps_ = 0, stage2_steps_ = 0;
  std::map<std::string, Series> metrics_;
  std::map<std::string, Series> evals_;
  std::vector<std::string> part_order_;
  std::vector<SnapshotEntry> snapshots_;
  std::vector<snapshot::RunSummary> summary_;
  snapshot::StepReport last_step_;
  std::string last_stage_;
  int64_t steps_received_ = 0;
  uint64_t revision_ = 0;
};

// Exponential moving average with weight `smoothing` ∈ [0, 1) on the past (0 = the raw series), bias
// corrected so the first points are not pulled towards zero.
QVector<double> smoothed(const QVector<double>& y, double smoothing);

}  // namespace hedgelab::views
