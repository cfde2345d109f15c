// The ImGui inspector (docs/method.md §7, issue 6): a dense layer × head grid of the alignment figures of one
// probe snapshot — per layer the cosine alignment teacher-forced and free-running, per head the entropy gap
// (student − teacher), the row KL and Spearman's ρ — as coloured cells with the figures of the hovered cell
// in a tooltip, and the live knobs of a training run (peak learning rate, λ_ce, λ_kd, λ_align, KD
// temperature τ, probe interval) whose edits it emits as a KnobEdit for the worker to apply between steps.
// Drawn with Dear ImGui through ImGuiHost.
#pragma once

#include <QRectF>
#include <map>
#include <memory>
#include <string>

#include "core/snapshot/probe_snapshot.h"
#include "core/snapshot/run_reports.h"
#include "views/imgui_host.h"
#include "views/snapshot_metatypes.h"  // KnobEdit as a Qt meta-type

namespace hedgelab::views {

// The figures of the grid, in its column order.
enum class InspectorFigure { CosineForced, CosineFree, EntropyGap, RowKl, Spearman };
constexpr int kInspectorFigures = 5;
const char* figure_name(InspectorFigure f);  // "cos teacher-forced", …
bool figure_per_head(InspectorFigure f);     // false for the two per-layer cosines

// The value a cell shows: cosines of `layer` (head ignored), student_entropy − teacher_entropy, row_kl or
// spearman of (layer, head). NaN where the snapshot has none.
double figure_value(const snapshot::ProbeSnapshot& s, InspectorFigure f, int64_t layer, int64_t head);

// Registers KnobEdit for queued connections (the worker lives on another thread). Idempotent.
void register_inspector_metatypes();

class InspectorView : public ImGuiHost {
  Q_OBJECT

 public:
  explicit InspectorView(QWidget* parent = nullptr);

  // The snapshot whose figures the grid shows (null: an empty grid and a note).
  void set_snapshot(std::shared_ptr<const snapshot::ProbeSnapshot> snapshot);
  const snapshot::ProbeSnapshot* snapshot() const { return snapshot_.get(); }
  // The knobs' current values (DistillRun::knob_values()); fields left unset keep what is shown.
  void set_knob_values(const snapshot::KnobEdit& values);
  // What the knob fields show now (every field set).
  snapshot::KnobEdit knob_values() const { return knobs_; }
  // Knobs greyed out and not editable (a saved session, no run to steer).
  void set_knobs_enabled(bool on) { knobs_enabled_ = on; }

  // Where the last frame drew a cell (head ignored for the cosines) or a knob's field ("lr", "ce_weight",
  // "kd_weight", "align_weight", "kd_temperature", "probe_every"), in widget pixels; empty if not drawn.
  QRectF cell_rect(InspectorFigure figure, int layer, int head) const;
  QRectF knob_rect(const std::string& name) const;

  int selected_layer() const { return selected_layer_; }
  int selected_head() const { return selected_head_; }

 Q_SIGNALS:
  // A knob was edited (Enter or leaving the field): only the edited field is set.
  void knobs_edited(const hedgelab::snapshot::KnobEdit& edit);
  // A cell was clicked: its layer, head (−1 for the per-layer cosines) and figure (InspectorFigure).
  void cell_selected(int layer, int head, int figure);

 protected:
  void draw_frame() override;

 private:
  void draw_grid();
  void draw_knobs();
  void emit_after_frame(const snapshot::KnobEdit& edit);

  std::shared_ptr<const snapshot::ProbeSnapshot> snapshot_;
  snapshot::KnobEdit knobs_;
  bool knobs_enabled_ = true;
  int selected_layer_ = -1, selected_head_ = -1;
  std::map<std::tuple<int, int, int>, QRectF> cells_;  // (figure, layer, head) → rect
  std::map<std::string, QRectF> knob_rects_;
};

}  // namespace hedgelab::views
