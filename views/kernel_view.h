// The kernel approximation (docs/method.md §7) of one layer and head: log P_ts against log ā_ts over the
// pairs s ≤ t with the diagonal (perfect mimicry lies on it), the teacher logit q·k/√P against the feature
// logit log φ_q(q)ᵀφ_k(k) (log C_tᵀB_s in stage 2), Spearman's ρ per head of the layer as bars, and the
// learned feature-map weights W_q or W_k of the head as a heat map.
#pragma once

#include <QWidget>
#include <memory>

#include "core/snapshot/probe_snapshot.h"
#include "views/inspection_common.h"
#include "views/plot_canvas.h"

class QComboBox;
class QLabel;

namespace hedgelab::views {

class KernelView : public QWidget {
  Q_OBJECT

 public:
  explicit KernelView(QWidget* parent = nullptr);

  void set_snapshot(std::shared_ptr<const snapshot::ProbeSnapshot> snapshot);
  void set_selection(int layer, int head);
  int layer() const { return picker_->layer(); }
  int head() const { return picker_->head(); }
  // Which feature map the heat map shows: false W_q, true W_k.
  void show_key_weights(bool on);

  PlotCanvas* attention_scatter() const { return log_scatter_; }
  PlotCanvas* logit_scatter() const { return logit_scatter_; }
  PlotCanvas* spearman_bars() const { return rho_; }
  PlotCanvas* weights_plot() const { return weights_; }
  const NamedPlots& plots() const { return plots_; }
  bool export_all(const QString& dir, const QString& format, QString* error = nullptr) const {
    return plots_.export_all(dir, format, error);
  }

 Q_SIGNALS:
  void selection_changed(int layer, int head);

 private:
  void redraw();

  std::shared_ptr<const snapshot::ProbeSnapshot> snapshot_;
  LayerHeadPicker* picker_ = nullptr;
  QComboBox* which_ = nullptr;
  QLabel* caption_ = nullptr;
  PlotCanvas *log_scatter_ = nullptr, *logit_scatter_ = nullptr, *rho_ = nullptr, *weights_ = nullptr;
  int log_points_ = -1, logit_points_ = -1, rho_bars_ = -1, rho_current_ = -1;
  NamedPlots plots_;
};

}  // namespace hedgelab::views
