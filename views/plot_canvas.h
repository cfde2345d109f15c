// The one door to QCustomPlot: every plot in the lab is a PlotCanvas, and no other file includes
// qcustomplot.h. Curves (lines over a sorted x), scatters, grouped bars, horizontal reference lines, the
// diagonal, and heat maps of a Grid with token labels; log y, pan and zoom, hover text, export to PNG, SVG
// or PDF. Curves of 100k points stay smooth: QCustomPlot's adaptive sampling draws at most a few points
// per pixel column.
#pragma once

#include <QColor>
#include <QImage>
#include <QString>
#include <QStringList>
#include <QVector>
#include <QWidget>
#include <functional>
#include <memory>

#include "core/snapshot/probe_snapshot.h"

class QCustomPlot;

namespace hedgelab::views {

// Colour scales of heat maps: Sequential for values ≥ 0 (attention weights), Diverging centred on zero
// (differences), Categorical-free by design.
enum class ColorScale { Sequential, Diverging };

class PlotCanvas : public QWidget {
  Q_OBJECT

 public:
  explicit PlotCanvas(QWidget* parent = nullptr);
  ~PlotCanvas() override;

  void set_title(const QString& title);
  void set_axis_labels(const QString& x, const QString& y);
  void set_log_y(bool on);
  bool log_y() const { return log_y_; }
  void set_legend_visible(bool on);
  // Mouse drag pans and the wheel zooms (both axes); off for heat maps by default.
  void set_pan_zoom(bool on);

  // A line over ascending x, data replaced wholesale. Returns the curve's handle.
  int add_curve(const QString& name, const QColor& color, Qt::PenStyle style = Qt::SolidLine,
                double width = 1.5);
  void set_curve_data(int curve, const QVector<double>& x, const QVector<double>& y);
  void set_curve_visible(int curve, bool visible);
  int curve_points(int curve) const;

  // Points without lines, x in any order.
  int add_scatter(const QString& name, const QColor& color, double size = 4.0);
  void set_scatter_data(int scatter, const QVector<double>& x, const QVector<double>& y);

  // A horizontal line across the plot at y (a reference, e.g. the teacher's perplexity).
  int add_reference_line(const QString& name, const QColor& color);
  void set_reference_line(int line, double y);
  // Vertical markers at x (e.g. 0: the stage boundary, 1: the step being inspected); NaN hides one.
  void set_vertical_marker(int id, double x);
  // The line y = x over the current x range (kernel scatter).
  void set_diagonal_visible(bool on);

  // Bars at x positions, grouped by `offset` (fraction of one x unit) so several series sit side by side.
  int add_bars(const QString& name, const QColor& color, double width = 0.35, double offset = 0.0);
  void set_bar_data(int bars, const QVector<double>& x, const QVector<double>& heights);

  // A heat map: cell (r, c) of `grid` drawn at x = c, y = r with row 0 at the top, coloured on [lo, hi].
  // Labels (e.g. tokens) name the columns and rows; empty = numbers. One heat map per canvas.
  void set_heatmap(const snapshot::Grid& grid, double lo, double hi, ColorScale scale,
                   const QStringList& column_labels = {}, const QStringList& row_labels = {});
  void set_heatmap_color_bar(bool on, const QString& label = {});
  // The value drawn in cell (r, c) (NaN outside), for tests and hover.
  double heatmap_value(int row, int col) const;
  void clear_heatmap();

  // x and y range by hand, or fitted to the data.
  void set_x_range(double lo, double hi);
  void set_y_range(double lo, double hi);
  void rescale();
  // Removes curves, scatters, bars, lines and the heat map.
  void clear();
  // Redraw at the next event-loop turn (several calls in one turn draw once); a hidden canvas (a dock in the
  // back) only remembers it and redraws when shown.
  void replot();

  // Hover: the text shown as a tooltip for plot coordinates (x, y); empty = none.
  void set_hover_text(std::function<QString(double x, double y)> text_at);

  // Export by suffix: .png, .svg or .pdf; size 0 = the widget's size. False with `error` set on failure.
  bool export_to(const QString& path, QString* error = nullptr, int width = 0, int height = 0);
  QImage to_image(int width = 0, int height = 0);
  // The plotted data as CSV: curves, scatters and bars in long form (series,x,y), a heat map as a matrix
  // with its labels. False with `error` set when the file cannot be written.
  bool export_csv(const QString& path, QString* error = nullptr) const;
  // The right-click menu's "Export plot…" / "Export data as CSV…" use this stem for suggested file names.
  void set_export_name(const QString& stem) { export_name_ = stem; }

  // Milliseconds the last replot took (QCustomPlot's own measure), for benchmarks.
  double last_replot_ms() const;

 protected:
  void showEvent(QShowEvent* event) override;

 Q_SIGNALS:
  // A click on the plot area, in plot coordinates (heat maps: x = column, y = row).
  void clicked(double x, double y);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  bool log_y_ = false;
  bool replot_pending_ = false;
  QString export_name_ = QStringLiteral("plot");
};

// Writes `text` to `path` through a temporary file and a rename (nothing half-written is left behind).
bool write_text_file(const QString& path, const QString& text, QString* error = nullptr);

// "attention.png" → the formats export_to understands; for file dialogs.
QString plot_export_filter();

}  // namespace hedgelab::views
