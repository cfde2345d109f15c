// Attention maps (docs/method.md §7): for one layer and head of a probe snapshot, the teacher's softmax P,
// the student's map ā (stage 1's Hedgehog attention, or the mixer's implied attention in stage 2, rows
// renormalised over s ≤ t) and their difference P − ā side by side on one colour scale, tokens as axis
// labels, hover giving the token pair and the three values; a table of per-head entropy (teacher and
// student) with the row KL and ρ of the layer; and an overview of every layer × head as thumbnails
// (teacher beside student) where a click opens that head.
#pragma once

#include <QWidget>
#include <memory>

#include "core/snapshot/probe_snapshot.h"
#include "views/inspection_common.h"
#include "views/plot_canvas.h"

class QLabel;
class QTabWidget;
class QTableWidget;

namespace hedgelab::views {

// Every layer × head as a pair of small maps (teacher left, student right), drawn straight into an image.
class AttentionThumbnails : public QWidget {
  Q_OBJECT

 public:
  explicit AttentionThumbnails(QWidget* parent = nullptr);
  void set_snapshot(std::shared_ptr<const snapshot::ProbeSnapshot> snapshot);
  // The rectangle of (layer, head)'s thumbnail, in widget pixels.
  QRect thumbnail_rect(int layer, int head) const;
  QSize sizeHint() const override;

 Q_SIGNALS:
  void head_clicked(int layer, int head);

 protected:
  void paintEvent(QPaintEvent* event) override;
  void mousePressEvent(QMouseEvent* event) override;

 private:
  std::shared_ptr<const snapshot::ProbeSnapshot> snapshot_;
  QImage image_;  // rendered once per snapshot
  int cell_ = 0;  // side of one map in pixels
};

class AttentionView : public QWidget {
  Q_OBJECT

 public:
  explicit AttentionView(QWidget* parent = nullptr);

  void set_snapshot(std::shared_ptr<const snapshot::ProbeSnapshot> snapshot);
  void set_selection(int layer, int head);
  int layer() const { return picker_->layer(); }
  int head() const { return picker_->head(); }
  // Shows the detail tab (the maps) or the overview of thumbnails.
  void show_overview(bool on);

  PlotCanvas* teacher_plot() const { return teacher_; }
  PlotCanvas* student_plot() const { return student_; }
  PlotCanvas* difference_plot() const { return diff_; }
  QTableWidget* head_table() const { return table_; }
  AttentionThumbnails* thumbnails() const { return thumbs_; }
  const NamedPlots& plots() const { return plots_; }
  // PNG/SVG/PDF of the three maps and their CSV into `dir` (format: "png", "svg" or "pdf").
  bool export_all(const QString& dir, const QString& format, QString* error = nullptr) const {
    return plots_.export_all(dir, format, error);
  }

 Q_SIGNALS:
  void selection_changed(int layer, int head);

 private:
  void redraw();
  void fill_table();
  QString hover(double x, double y) const;

  std::shared_ptr<const snapshot::ProbeSnapshot> snapshot_;
  LayerHeadPicker* picker_ = nullptr;
  QLabel* caption_ = nullptr;
  QTabWidget* tabs_ = nullptr;
  PlotCanvas *teacher_ = nullptr, *student_ = nullptr, *diff_ = nullptr;
  QTableWidget* table_ = nullptr;
  AttentionThumbnails* thumbs_ = nullptr;
  NamedPlots plots_;
  snapshot::Grid student_map_;  // the drawn (row-renormalised) student map
};

}  // namespace hedgelab::views
