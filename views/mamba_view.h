// Mamba internals of one HedgeMamba mixer (docs/method.md §7), stage-2 snapshots only: Δ_t and α_t per head
// over the probe text, the gate g(z_t) as a time × channel map and its histogram, ‖S_t‖ per head over time,
// the final state S_T of a head, the conv taps (x, k or q), and the mixer's implied attention beside the
// teacher's softmax map on one colour scale — the state-space/attention duality made visible. A stage-1
// snapshot has no mixers: the view says so.
#pragma once

#include <QWidget>
#include <array>
#include <memory>

#include "core/snapshot/probe_snapshot.h"
#include "views/inspection_common.h"
#include "views/plot_canvas.h"

class QComboBox;
class QLabel;
class QStackedWidget;
class QTabWidget;

namespace hedgelab::views {

class MambaView : public QWidget {
  Q_OBJECT

 public:
  explicit MambaView(QWidget* parent = nullptr);

  void set_snapshot(std::shared_ptr<const snapshot::ProbeSnapshot> snapshot);
  void set_selection(int layer, int head);
  int layer() const { return picker_->layer(); }
  int head() const { return picker_->head(); }
  // The tabs: Δ/α/‖S_t‖, gate, final state and conv taps, implied attention. Only the current tab is drawn
  // when the snapshot or selection changes; the others when they are shown (show_tab) or before an export.
  enum Tab { kTimeTab = 0, kGateTab = 1, kStateTab = 2, kAttentionTab = 3 };
  static constexpr int kTabs = 4;
  void show_tab(int tab);
  void draw_all_tabs();
  // Conv taps shown: 0 x, 1 k, 2 q.
  void set_conv(int which);
  // True when the snapshot has mixers (stage 2); else the view shows the note.
  bool showing_internals() const;
  QString note() const;

  PlotCanvas* delta_plot() const { return delta_; }
  PlotCanvas* alpha_plot() const { return alpha_; }
  PlotCanvas* gate_map() const { return gate_; }
  PlotCanvas* gate_histogram() const { return gate_hist_; }
  PlotCanvas* state_norm_plot() const { return norm_; }
  PlotCanvas* final_state_plot() const { return final_; }
  PlotCanvas* conv_plot() const { return conv_; }
  PlotCanvas* implied_plot() const { return implied_; }
  PlotCanvas* teacher_plot() const { return teacher_; }
  const NamedPlots& plots() const { return plots_; }
  bool export_all(const QString& dir, const QString& format, QString* error = nullptr) {
    draw_all_tabs();
    return plots_.export_all(dir, format, error);
  }

 Q_SIGNALS:
  void selection_changed(int layer, int head);

 private:
  void redraw();
  void draw_tab(int tab);
  void set_head_curves(PlotCanvas* plot, std::vector<int>& ids, const snapshot::Grid& g);

  std::shared_ptr<const snapshot::ProbeSnapshot> snapshot_;
  LayerHeadPicker* picker_ = nullptr;
  QComboBox* conv_which_ = nullptr;
  QLabel* caption_ = nullptr;
  QStackedWidget* stack_ = nullptr;
  QTabWidget* tabs_ = nullptr;
  std::array<bool, kTabs> stale_{};
  QLabel* note_ = nullptr;
  PlotCanvas *delta_ = nullptr, *alpha_ = nullptr, *gate_ = nullptr, *gate_hist_ = nullptr, *norm_ = nullptr,
             *final_ = nullptr, *conv_ = nullptr, *implied_ = nullptr, *teacher_ = nullptr;
  std::vector<int> delta_curves_, alpha_curves_, norm_curves_;
  int hist_bars_ = -1;
  NamedPlots plots_;
};

}  // namespace hedgelab::views
