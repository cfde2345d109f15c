#include "views/run_data.h"

#include <algorithm>
#include <cmath>

namespace hedgelab::views {

namespace {
const Series kEmpty;

void append(Series& s, double x, double y) {
  // Keep x ascending: a resumed run may repeat steps after its checkpoint; the newer value wins.
  while (!s.x.isEmpty() && s.x.back() >= x) {
    s.x.pop_back();
    s.y.pop_back();
  }
  s.x.push_back(x);
  s.y.push_back(y);
}
}  // namespace

void RunData::clear() {
  *this = RunData();
}

void RunData::set_stage_steps(int64_t stage1_steps, int64_t stage2_steps) {
  stage1_steps_ = stage1_steps;
  stage2_steps_ = stage2_steps;
  ++revision_;
}

double RunData::global_step(const std::string& stage, int64_t step) const {
  return static_cast<double>(stage == "stage2" ? stage1_steps_ + step : step);
}

void RunData::add_step(const std::string& stage, const snapshot::StepReport& r, double wall_seconds) {
  const double x = global_step(stage, r.step);
  append(metrics_["total"], x, r.total);
  append(metrics_["lr"], x, r.lr);
  append(metrics_["grad_norm"], x, r.grad_norm);
  append(metrics_["tokens_per_second"], x, r.tokens_per_second);
  append(metrics_["tokens_seen"], x, static_cast<double>(r.tokens_seen));
  if (wall_seconds >= 0) append(metrics_["wall_seconds"], x, wall_seconds);
  for (const auto& [name, value] : r.parts) {
    if (std::find(part_order_.begin(), part_order_.end(), name) == part_order_.end())
      part_order_.push_back(name);
    append(metrics_[name], x, value);
  }
  last_step_ = r;
  last_stage_ = stage;
  ++steps_received_;
  ++revision_;
}

void RunData::add_eval(const std::string& stage, const snapshot::EvalReport& e) {
  const double x = global_step(stage, e.step);
  for (const auto& [name, value] : e.metrics)
    append(evals_[name], x, value);
  ++revision_;
}

void RunData::add_snapshot(SnapshotEntry entry) {
  if (entry.snapshot && entry.alignment.empty()) entry.alignment = entry.snapshot->alignment;
  snapshots_.push_back(std::move(entry));
  ++revision_;
}

void RunData::set_snapshot(size_t i, std::shared_ptr<const snapshot::ProbeSnapshot> snapshot) {
  if (i >= snapshots_.size()) return;
  snapshots_[i].snapshot = std::move(snapshot);
  if (snapshots_[i].snapshot && snapshots_[i].alignment.empty())
    snapshots_[i].alignment = snapshots_[i].snapshot->alignment;
  ++revision_;
}

void RunData::set_summary(std::vector<snapshot::RunSummary> rows) {
  summary_ = std::move(rows);
  ++revision_;
}

const Series& RunData::metric(const std::string& name) const {
  auto it = metrics_.find(name);
  return it == metrics_.end() ? kEmpty : it->second;
}

std::vector<std::string> RunData::metric_names() const {
  std::vector<std::string> names;
  for (const auto& [name, s] : metrics_)
    names.push_back(name);
  return names;
}

std::vector<std::string> RunData::loss_part_names() const {
  return part_order_;
}

const Series& RunData::eval(const std::string& name) const {
  auto it = evals_.find(name);
  return it == evals_.end() ? kEmpty : it->second;
}

std::vector<std::string> RunData::eval_names() const {
  std::vector<std::string> names;
  for (const auto& [name, s] : evals_)
    names.push_back(name);
  return names;
}

QVector<double> smoothed(const QVector<double>& y, double smoothing) {
  if (smoothing <= 0.0) return y;
  smoothing = std::min(smoothing, 0.999);
  QVector<double> out(y.size());
  double avg = 0.0, weight = 0.0;
  for (int i = 0; i < y.size(); ++i) {
    if (!std::isfinite(y[i])) {
      out[i] = y[i];
      continue;
    }
    avg = smoothing * avg + (1.0 - smoothing) * y[i];
    weight = smoothing * weight + (1.0 - smoothing);
    out[i] = avg / weight;
  }
  return out;
}

}  // namespace hedgelab::views
