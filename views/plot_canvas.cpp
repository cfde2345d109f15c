#include "views/plot_canvas.h"

#include <qcustomplot.h>

#include <QFileDialog>
#include <QFileInfo>
#include <QMenu>
#include <QMessageBox>
#include <QMouseEvent>
#include <QSaveFile>
#include <QSvgGenerator>
#include <QTextStream>
#include <QToolTip>
#include <QVBoxLayout>
#include <cmath>
#include <limits>
#include <map>

namespace hedgelab::views {

namespace {

QCPColorGradient gradient_for(ColorScale scale) {
  if (scale == ColorScale::Diverging) {
    QCPColorGradient g;
    g.setColorStopAt(0.0, QColor(33, 102, 172));
    g.setColorStopAt(0.5, QColor(247, 247, 247));
    g.setColorStopAt(1.0, QColor(178, 24, 43));
    return g;
  }
  // Perceptually ordered dark-blue → green → yellow (QCustomPlot 2.1 has no viridis preset).
  QCPColorGradient g;
  g.setColorStopAt(0.0, QColor(68, 1, 84));
  g.setColorStopAt(0.25, QColor(59, 82, 139));
  g.setColorStopAt(0.5, QColor(33, 145, 140));
  g.setColorStopAt(0.75, QColor(94, 201, 98));
  g.setColorStopAt(1.0, QColor(253, 231, 37));
  return g;
}

QSharedPointer<QCPAxisTicker> label_ticker(const QStringList& labels) {
  auto ticker = QSharedPointer<QCPAxisTickerText>::create();
  // Thin the labels so they stay legible: at most ~40 per axis.
  const int every = std::max(1, static_cast<int>(std::ceil(labels.size() / 40.0)));
  for (int i = 0; i < labels.size(); i += every)
    ticker->addTick(i, labels[i]);
  return ticker;
}

}  // namespace

struct PlotCanvas::Impl {
  QCustomPlot* plot = nullptr;
  QVector<QCPGraph*> curves;
  QVector<QCPGraph*> scatters;
  QVector<QCPItemStraightLine*> references;
  QVector<QCPBars*> bars;
  QCPItemStraightLine* diagonal = nullptr;
  std::map<int, QCPItemStraightLine*> verticals;
  QCPColorMap* heatmap = nullptr;
  QCPColorScale* color_bar = nullptr;
  snapshot::Grid heat;  // what the heat map shows, for heatmap_value and hover
  std::function<QString(double, double)> hover_text;
};

PlotCanvas::PlotCanvas(QWidget* parent) : QWidget(parent), impl_(std::make_unique<Impl>()) {
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(0, 0, 0, 0);
  impl_->plot = new QCustomPlot(this);
  layout->addWidget(impl_->plot);
  auto* p = impl_->plot;
  p->setNoAntialiasingOnDrag(true);
  p->setPlottingHint(QCP::phCacheLabels, true);
  p->legend->setVisible(false);
  QFont legend_font = font();
  legend_font.setPointSizeF(std::max(6.0, legend_font.pointSizeF() * 0.8));
  p->legend->setFont(legend_font);
  p->legend->setIconSize(14, 8);
  p->legend->setBrush(QBrush(palette().color(QPalette::Base)));
  // Follow the widget palette (dark or light).
  const QColor fg = palette().color(QPalette::WindowText);
  const QColor bg = palette().color(QPalette::Base);
  p->setBackground(bg);
  for (QCPAxis* axis : {p->xAxis, p->yAxis, p->xAxis2, p->yAxis2}) {
    axis->setBasePen(QPen(fg));
    axis->setTickPen(QPen(fg));
    axis->setSubTickPen(QPen(fg));
    axis->setTickLabelColor(fg);
    axis->setLabelColor(fg);
    axis->grid()->setPen(QPen(QColor(fg.red(), fg.green(), fg.blue(), 40), 0, Qt::DotLine));
  }
  p->legend->setTextColor(fg);
  p->legend->setBorderPen(QPen(fg));
  set_pan_zoom(true);
  p->setMouseTracking(true);
  connect(p, &QCustomPlot::mouseMove, this, [this](QMouseEvent* event) {
    if (!impl_->hover_text) return;
    const double x = impl_->plot->xAxis->pixelToCoord(event->position().x());
    const double y = impl_->plot->yAxis->pixelToCoord(event->position().y());
    const QString text = impl_->hover_text(x, y);
    if (text.isEmpty())
      QToolTip::hideText();
    else
      QToolTip::showText(event->globalPosition().toPoint(), text, impl_->plot);
  });
  p->setContextMenuPolicy(Qt::CustomContextMenu);
  connect(p, &QWidget::customContextMenuRequested, this, [this](const QPoint& at) {
    QMenu menu(this);
    menu.addAction(tr("Export plot…"), this, [this] {
      const QString path =
          QFileDialog::getSaveFileName(this, tr("Export plot"), export_name_ + ".png", plot_export_filter());
      QString error;
      if (!path.isEmpty() && !export_to(path, &error)) QMessageBox::warning(this, tr("Export"), error);
    });
    menu.addAction(tr("Export data as CSV…"), this, [this] {
      const QString path =
          QFileDialog::getSaveFileName(this, tr("Export data"), export_name_ + ".csv", tr("CSV (*.csv)"));
      QString error;
      if (!path.isEmpty() && !export_csv(path, &error)) QMessageBox::warning(this, tr("Export"), error);
    });
    menu.addAction(tr("Fit to data"), this, [this] { rescale(); });
    menu.exec(impl_->plot->mapToGlobal(at));
  });
  connect(p, &QCustomPlot::mousePress, this, [this](QMouseEvent* event) {
    if (event->button() != Qt::LeftButton) return;
    Q_EMIT clicked(impl_->plot->xAxis->pixelToCoord(event->position().x()),
                   impl_->plot->yAxis->pixelToCoord(event->position().y()));
  });
}

PlotCanvas::~PlotCanvas() = default;

void PlotCanvas::set_title(const QString& title) {
  auto* p = impl_->plot;
  if (p->plotLayout()->rowCount() < 2 || !qobject_cast<QCPTextElement*>(p->plotLayout()->element(0, 0))) {
    p->plotLayout()->insertRow(0);
    auto* text = new QCPTextElement(p, title, QFont(font().family(), font().pointSize() + 1, QFont::Bold));
    text->setTextColor(palette().color(QPalette::WindowText));
    p->plotLayout()->addElement(0, 0, text);
  } else {
    static_cast<QCPTextElement*>(p->plotLayout()->element(0, 0))->setText(title);
  }
  replot();
}

void PlotCanvas::set_axis_labels(const QString& x, const QString& y) {
  impl_->plot->xAxis->setLabel(x);
  impl_->plot->yAxis->setLabel(y);
  replot();
}

void PlotCanvas::set_log_y(bool on) {
  log_y_ = on;
  auto* axis = impl_->plot->yAxis;
  if (on) {
    axis->setScaleType(QCPAxis::stLogarithmic);
    axis->setTicker(QSharedPointer<QCPAxisTickerLog>::create());
  } else {
    axis->setScaleType(QCPAxis::stLinear);
    axis->setTicker(QSharedPointer<QCPAxisTicker>::create());
  }
  rescale();
}

void PlotCanvas::set_legend_visible(bool on) {
  impl_->plot->legend->setVisible(on);
  replot();
}

void PlotCanvas::set_pan_zoom(bool on) {
  impl_->plot->setInteractions(on ? (QCP::iRangeDrag | QCP::iRangeZoom) : QCP::Interactions());
}

int PlotCanvas::add_curve(const QString& name, const QColor& color, Qt::PenStyle style, double width) {
  QCPGraph* g = impl_->plot->addGraph();
  g->setName(name);
  g->setPen(QPen(color, width, style));
  g->setAdaptiveSampling(true);
  impl_->curves.push_back(g);
  return impl_->curves.size() - 1;
}

void PlotCanvas::set_curve_data(int curve, const QVector<double>& x, const QVector<double>& y) {
  QCPGraph* g = impl_->curves.at(curve);
  g->setData(x, y, /*alreadySorted=*/true);
  // Long curves: a cosmetic one-pixel pen without antialiasing keeps pan and zoom interactive (the raster
  // engine strokes wide antialiased polylines of adaptive-sampled data at seconds per replot).
  const bool long_curve = x.size() > 20000;
  g->setAntialiased(!long_curve);
  if (long_curve && g->pen().widthF() != 0) {
    QPen pen = g->pen();
    pen.setWidthF(0);
    pen.setCosmetic(true);
    g->setPen(pen);
  }
}

void PlotCanvas::set_curve_visible(int curve, bool visible) {
  impl_->curves.at(curve)->setVisible(visible);
  if (visible)
    impl_->curves.at(curve)->addToLegend();
  else
    impl_->curves.at(curve)->removeFromLegend();
}

int PlotCanvas::curve_points(int curve) const {
  return impl_->curves.at(curve)->dataCount();
}

int PlotCanvas::add_scatter(const QString& name, const QColor& color, double size) {
  QCPGraph* g = impl_->plot->addGraph();
  g->setName(name);
  g->setLineStyle(QCPGraph::lsNone);
  QColor fill = color;
  fill.setAlpha(140);
  g->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssDisc, fill, fill, size));
  g->setAdaptiveSampling(false);
  impl_->scatters.push_back(g);
  return impl_->scatters.size() - 1;
}

void PlotCanvas::set_scatter_data(int scatter, const QVector<double>& x, const QVector<double>& y) {
  impl_->scatters.at(scatter)->setData(x, y, /*alreadySorted=*/false);
}

int PlotCanvas::add_reference_line(const QString& name, const QColor& color) {
  auto* line = new QCPItemStraightLine(impl_->plot);
  line->setPen(QPen(color, 1.5, Qt::DashLine));
  line->setObjectName(name);
  line->point1->setCoords(0, std::numeric_limits<double>::quiet_NaN());
  line->point2->setCoords(1, std::numeric_limits<double>::quiet_NaN());
  line->setVisible(false);
  impl_->references.push_back(line);
  // A legend entry through an empty graph of the same pen, so the reference is named.
  QCPGraph* label = impl_->plot->addGraph();
  label->setName(name);
  label->setPen(line->pen());
  return impl_->references.size() - 1;
}

void PlotCanvas::set_reference_line(int line, double y) {
  auto* l = impl_->references.at(line);
  l->point1->setCoords(0, y);
  l->point2->setCoords(1, y);
  l->setVisible(std::isfinite(y));
}

void PlotCanvas::set_vertical_marker(int id, double x) {
  auto*& line = impl_->verticals[id];
  if (!line) {
    if (!std::isfinite(x)) return;
    line = new QCPItemStraightLine(impl_->plot);
    QColor c = palette().color(QPalette::WindowText);
    c.setAlpha(id == 0 ? 90 : 200);
    line->setPen(QPen(c, 1, id == 0 ? Qt::DotLine : Qt::SolidLine));
  }
  line->point1->setCoords(x, 0);
  line->point2->setCoords(x, 1);
  line->setVisible(std::isfinite(x));
}

void PlotCanvas::set_diagonal_visible(bool on) {
  if (!impl_->diagonal) {
    impl_->diagonal = new QCPItemStraightLine(impl_->plot);
    impl_->diagonal->setPen(QPen(palette().color(QPalette::WindowText), 1, Qt::DashLine));
    impl_->diagonal->point1->setCoords(0, 0);
    impl_->diagonal->point2->setCoords(1, 1);
  }
  impl_->diagonal->setVisible(on);
}

int PlotCanvas::add_bars(const QString& name, const QColor& color, double width, double offset) {
  auto* b = new QCPBars(impl_->plot->xAxis, impl_->plot->yAxis);
  b->setName(name);
  b->setWidth(width);
  b->setPen(QPen(color.darker(120)));
  b->setBrush(color);
  b->setProperty("hedgelab_offset", offset);
  impl_->bars.push_back(b);
  return impl_->bars.size() - 1;
}

void PlotCanvas::set_bar_data(int bars, const QVector<double>& x, const QVector<double>& heights) {
  QCPBars* b = impl_->bars.at(bars);
  const double offset = b->property("hedgelab_offset").toDouble();
  QVector<double> shifted(x.size());
  for (int i = 0; i < x.size(); ++i)
    shifted[i] = x[i] + offset;
  b->setData(shifted, heights, /*alreadySorted=*/true);
}

void PlotCanvas::set_heatmap(const snapshot::Grid& grid, double lo, double hi, ColorScale scale,
                             const QStringList& column_labels, const QStringList& row_labels) {
  auto* p = impl_->plot;
  if (!impl_->heatmap) {
    impl_->heatmap = new QCPColorMap(p->xAxis, p->yAxis);
    impl_->heatmap->setInterpolate(false);
    impl_->heatmap->setTightBoundary(false);
    p->yAxis->setRangeReversed(true);  // row 0 at the top, like a matrix
    p->xAxis->grid()->setVisible(false);
    p->yAxis->grid()->setVisible(false);
    set_pan_zoom(false);
  }
  impl_->heat = grid;
  auto* map = impl_->heatmap;
  const int cols = static_cast<int>(grid.cols), rows = static_cast<int>(grid.rows);
  map->data()->setSize(cols, rows);
  map->data()->setRange(QCPRange(0, std::max(0, cols - 1)), QCPRange(0, std::max(0, rows - 1)));
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c)
      map->data()->setCell(c, r, grid.at(r, c));
  map->setGradient(gradient_for(scale));
  map->setDataRange(QCPRange(lo, hi > lo ? hi : lo + 1e-12));
  if (impl_->color_bar) {
    impl_->color_bar->setGradient(map->gradient());
    impl_->color_bar->setDataRange(map->dataRange());
  }
  if (!column_labels.isEmpty()) {
    p->xAxis->setTicker(label_ticker(column_labels));
    p->xAxis->setTickLabelRotation(60);
  }
  if (!row_labels.isEmpty()) p->yAxis->setTicker(label_ticker(row_labels));
  p->xAxis->setRange(-0.5, cols - 0.5);
  p->yAxis->setRange(-0.5, rows - 0.5);
  replot();
}

void PlotCanvas::set_heatmap_color_bar(bool on, const QString& label) {
  auto* p = impl_->plot;
  if (on && !impl_->color_bar) {
    impl_->color_bar = new QCPColorScale(p);
    p->plotLayout()->addElement(p->plotLayout()->rowCount() - 1, 1, impl_->color_bar);
    impl_->color_bar->setType(QCPAxis::atRight);
    impl_->color_bar->axis()->setTickLabelColor(palette().color(QPalette::WindowText));
    impl_->color_bar->axis()->setLabelColor(palette().color(QPalette::WindowText));
    if (impl_->heatmap) {
      impl_->color_bar->setGradient(impl_->heatmap->gradient());
      impl_->color_bar->setDataRange(impl_->heatmap->dataRange());
    }
  }
  if (impl_->color_bar) {
    impl_->color_bar->setVisible(on);
    impl_->color_bar->setLabel(label);
  }
  replot();
}

double PlotCanvas::heatmap_value(int row, int col) const {
  const auto& g = impl_->heat;
  if (!impl_->heatmap || row < 0 || col < 0 || row >= g.rows || col >= g.cols)
    return std::numeric_limits<double>::quiet_NaN();
  return impl_->heatmap->data()->cell(col, row);
}

void PlotCanvas::clear_heatmap() {
  if (!impl_->heatmap) return;
  impl_->plot->removePlottable(impl_->heatmap);
  impl_->heatmap = nullptr;
  impl_->heat = snapshot::Grid();
  replot();
}

void PlotCanvas::set_x_range(double lo, double hi) {
  impl_->plot->xAxis->setRange(lo, hi);
  replot();
}

void PlotCanvas::set_y_range(double lo, double hi) {
  impl_->plot->yAxis->setRange(lo, hi);
  replot();
}

void PlotCanvas::rescale() {
  auto* p = impl_->plot;
  if (impl_->heatmap) {
    p->xAxis->setRange(-0.5, impl_->heat.cols - 0.5);
    p->yAxis->setRange(-0.5, impl_->heat.rows - 0.5);
  } else {
    p->rescaleAxes(/*onlyVisiblePlottables=*/true);
    // Reference lines are items, not plottables: keep them in view.
    for (auto* l : impl_->references) {
      if (!l->visible()) continue;
      const double y = l->point1->coords().y();
      QCPRange r = p->yAxis->range();
      if (y < r.lower) r.lower = y;
      if (y > r.upper) r.upper = y;
      p->yAxis->setRange(r);
    }
    if (!log_y_) p->yAxis->scaleRange(1.05, p->yAxis->range().center());
  }
  replot();
}

void PlotCanvas::clear() {
  auto* p = impl_->plot;
  p->clearPlottables();
  p->clearItems();
  impl_->curves.clear();
  impl_->scatters.clear();
  impl_->references.clear();
  impl_->bars.clear();
  impl_->diagonal = nullptr;
  impl_->verticals.clear();
  impl_->heatmap = nullptr;
  impl_->heat = snapshot::Grid();
  replot();
}

void PlotCanvas::replot() {
  if (!isVisible()) {
    replot_pending_ = true;
    return;
  }
  impl_->plot->replot(QCustomPlot::rpQueuedReplot);
}

void PlotCanvas::showEvent(QShowEvent* event) {
  QWidget::showEvent(event);
  if (replot_pending_) {
    replot_pending_ = false;
    impl_->plot->replot(QCustomPlot::rpQueuedReplot);
  }
}

void PlotCanvas::set_hover_text(std::function<QString(double, double)> text_at) {
  impl_->hover_text = std::move(text_at);
}

bool PlotCanvas::export_to(const QString& path, QString* error, int width, int height) {
  auto fail = [&](const QString& why) {
    if (error) *error = path + ": " + why;
    return false;
  };
  auto* p = impl_->plot;
  p->replot(QCustomPlot::rpImmediateRefresh);
  const QString suffix = QFileInfo(path).suffix().toLower();
  const int w = width > 0 ? width : std::max(p->width(), 640);
  const int h = height > 0 ? height : std::max(p->height(), 400);
  bool ok = false;
  if (suffix == "png") {
    ok = p->savePng(path, w, h);
  } else if (suffix == "pdf") {
    ok = p->savePdf(path, w, h);
  } else if (suffix == "svg") {
    QSvgGenerator svg;
    svg.setFileName(path);
    svg.setSize(QSize(w, h));
    svg.setViewBox(QRect(0, 0, w, h));
    svg.setTitle(windowTitle());
    QCPPainter painter;
    if (!painter.begin(&svg)) return fail("cannot write the SVG file");
    p->toPainter(&painter, w, h);
    ok = painter.end();
  } else {
    return fail("unknown export format '" + suffix + "' (expected .png, .svg or .pdf)");
  }
  if (!ok || !QFileInfo(path).exists() || QFileInfo(path).size() == 0)
    return fail("could not be written (check the folder exists and is writable)");
  return true;
}

QImage PlotCanvas::to_image(int width, int height) {
  auto* p = impl_->plot;
  p->replot(QCustomPlot::rpImmediateRefresh);
  const int w = width > 0 ? width : std::max(p->width(), 640);
  const int h = height > 0 ? height : std::max(p->height(), 400);
  return p->toPixmap(w, h).toImage();
}

bool PlotCanvas::export_csv(const QString& path, QString* error) const {
  QString text;
  QTextStream out(&text);
  out.setRealNumberPrecision(9);
  const auto& heat = impl_->heat;
  if (impl_->heatmap && !heat.empty()) {
    out << "row/col";
    for (int64_t c = 0; c < heat.cols; ++c)
      out << "," << c;
    out << "\n";
    for (int64_t r = 0; r < heat.rows; ++r) {
      out << r;
      for (int64_t c = 0; c < heat.cols; ++c)
        out << "," << heat.at(r, c);
      out << "\n";
    }
  } else {
    out << "series,x,y\n";
    auto quoted = [](QString name) { return "\"" + name.replace("\"", "\"\"") + "\""; };
    auto dump_graph = [&](QCPGraph* g) {
      for (auto it = g->data()->constBegin(); it != g->data()->constEnd(); ++it)
        out << quoted(g->name()) << "," << it->key << "," << it->value << "\n";
    };
    for (auto* g : impl_->curves)
      dump_graph(g);
    for (auto* g : impl_->scatters)
      dump_graph(g);
    for (auto* b : impl_->bars)
      for (auto it = b->data()->constBegin(); it != b->data()->constEnd(); ++it)
        out << quoted(b->name()) << "," << it->key << "," << it->value << "\n";
    for (auto* l : impl_->references)
      if (l->visible()) out << quoted(l->objectName()) << ",," << l->point1->coords().y() << "\n";
  }
  out.flush();
  return write_text_file(path, text, error);
}

bool write_text_file(const QString& path, const QString& text, QString* error) {
  QSaveFile file(path);
  if (!file.open(QIODevice::WriteOnly | QIODevice::Text)) {
    if (error) *error = path + ": cannot be written (" + file.errorString() + ")";
    return false;
  }
  file.write(text.toUtf8());
  if (!file.commit()) {
    if (error) *error = path + ": cannot be written (" + file.errorString() + ")";
    return false;
  }
  return true;
}

double PlotCanvas::last_replot_ms() const {
  return impl_->plot->replotTime(false);
}

QString plot_export_filter() {
  return QStringLiteral("PNG image (*.png);;SVG drawing (*.svg);;PDF document (*.pdf)");
}

}  // namespace hedgelab::views
