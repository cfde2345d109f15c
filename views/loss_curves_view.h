// Loss curves of one run: the total and every loss part, stage 1's loss per layer, held-out perplexity of the
// student with the teacher's as a reference line, learning rate, gradient norm and tokens/s — each a
// PlotCanvas on a global step axis (stage 2 continues after stage 1, marked by a vertical line). A log-scale
// toggle and a smoothing slider act on the loss plots. Redraws from RunData when refresh() sees a new
// revision (the window calls it on a timer).
#pragma once

#include <QWidget>
#include <map>
#include <string>

#include "views/plot_canvas.h"
#include "views/run_data.h"

class QCheckBox;
class QSlider;
class QLabel;

namespace hedgelab::views {

class LossCurvesView : public QWidget {
  Q_OBJECT

 public:
  explicit LossCurvesView(QWidget* parent = nullptr);

  // Not owned; null shows nothing. The view keeps the pointer until set_data is called again.
  void set_data(const RunData* data);
  // Redraws when the data's revision moved (or `force`).
  void refresh(bool force = false);
  // Marks a step on every plot (the step slider of the inspection views); NaN hides the marker.
  void set_marker(double global_step);

  void set_log_scale(bool on);
  void set_smoothing(double smoothing);  // 0 … 0.99

  // For tests and screenshots.
  PlotCanvas* loss_plot() const { return loss_; }
  PlotCanvas* layer_plot() const { return layers_; }
  PlotCanvas* perplexity_plot() const { return perplexity_; }
  PlotCanvas* lr_plot() const { return lr_; }
  PlotCanvas* grad_norm_plot() const { return grad_norm_; }
  PlotCanvas* throughput_plot() const { return throughput_; }

 private:
  void redraw();
  void sync_curves(PlotCanvas* plot, std::map<std::string, int>& handles,
                   const std::vector<std::string>& names, bool smooth);

  const RunData* data_ = nullptr;
  uint64_t drawn_revision_ = ~0ull;
  double smoothing_ = 0.0;
  double marker_ = 0.0 / 0.0;
  QCheckBox* log_ = nullptr;
  QSlider* smooth_ = nullptr;
  QLabel* smooth_label_ = nullptr;
  PlotCanvas *loss_ = nullptr, *layers_ = nullptr, *perplexity_ = nullptr, *lr_ = nullptr,
             *grad_norm_ = nullptr, *throughput_ = nullptr;
  std::map<std::string, int> loss_curves_, layer_curves_;
  int ppl_student_ = -1, ppl_teacher_ = -1, lr_curve_ = -1, grad_curve_ = -1, tps_curve_ = -1;
};

// A colour for the i-th series, distinct on dark and light backgrounds.
QColor series_color(int i);

}  // namespace hedgelab::views
