// Pieces the inspection views (attention, kernel, Mamba) share: layer and head pickers, the export of every
// plot of a view (PNG/SVG/PDF and CSV), token labels, and the plain-data computations the views draw (row
// renormalisation, differences, the kernel pairs, histograms), kept here so tests check them by hand.
#pragma once

#include <QSpinBox>
#include <QString>
#include <QStringList>
#include <QVector>
#include <QWidget>
#include <functional>
#include <utility>
#include <vector>

#include "core/snapshot/probe_snapshot.h"
#include "views/plot_canvas.h"

class QHBoxLayout;

namespace hedgelab::views {

// Layer and head spin boxes with their bounds from a snapshot; emits changed(layer, head).
class LayerHeadPicker : public QWidget {
  Q_OBJECT

 public:
  explicit LayerHeadPicker(QWidget* parent = nullptr, bool with_head = true);
  void set_bounds(int64_t layers, int64_t heads);  // keeps the selection where it still fits
  void set_selection(int layer, int head);         // clamped; emits changed when it moves
  int layer() const;
  int head() const;
  QHBoxLayout* row() const { return row_; }  // for a view's extra controls

 Q_SIGNALS:
  void changed(int layer, int head);

 private:
  QSpinBox *layer_ = nullptr, *head_ = nullptr;
  QHBoxLayout* row_ = nullptr;
};

// The plots of a view under their export names.
struct NamedPlots {
  std::vector<std::pair<PlotCanvas*, QString>> plots;
  void add(PlotCanvas* plot, const QString& name) {
    plot->set_export_name(name);
    plots.emplace_back(plot, name);
  }
  // Writes <dir>/<name>.<format> (png, svg or pdf) and <dir>/<name>.csv for every plot; false with `error`
  // naming the first failure.
  bool export_all(const QString& dir, const QString& format, QString* error = nullptr) const;
};

// A push button "Export…" that asks for a folder and a format, calls `prepare` (e.g. draw hidden tabs), then
// plots.export_all.
QWidget* make_export_button(QWidget* parent, const NamedPlots* plots, std::function<void()> prepare = {});

// The snapshot's tokens as axis labels (whitespace made visible: "␣", "↵").
QStringList token_labels(const snapshot::ProbeSnapshot& s);

// Each row t renormalised to sum 1 over s ≤ t (entries above the diagonal zero); all-zero rows stay zero.
snapshot::Grid row_normalised(const snapshot::Grid& g);
// a − b elementwise (same shape).
snapshot::Grid difference(const snapshot::Grid& a, const snapshot::Grid& b);
// The largest finite value of the grids (0 for none).
double grid_max(std::initializer_list<const snapshot::Grid*> grids);

// Pairs s ≤ t of one head: x = log P_ts, y = log ā_ts (ā row-renormalised), skipping pairs where either is
// zero (no logarithm).
std::pair<QVector<double>, QVector<double>> log_attention_pairs(const snapshot::HeadAttention& h);
// Pairs s ≤ t: x = teacher logit q·k/√P, y = feature logit.
std::pair<QVector<double>, QVector<double>> logit_pairs(const snapshot::HeadAttention& h);

// A histogram of the finite values over [lo, hi] in `bins` equal bins: bin centres and counts.
std::pair<QVector<double>, QVector<double>> histogram(const std::vector<float>& values, int bins, double lo,
                                                      double hi);
// One row of a grid as a curve over 0..cols−1.
std::pair<QVector<double>, QVector<double>> grid_row(const snapshot::Grid& g, int64_t row);

}  // namespace hedgelab::views
