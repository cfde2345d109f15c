#include "views/loss_curves_view.h"

#include <QCheckBox>
#include <QGridLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QSlider>
#include <QVBoxLayout>
#include <cmath>

namespace hedgelab::views {

namespace {
bool is_layer_part(const std::string& name) {
  return name.find(".layers.") != std::string::npos;
}
}  // namespace

QColor series_color(int i) {
  static const QColor colors[] = {QColor(31, 119, 180),  QColor(255, 127, 14),  QColor(44, 160, 44),
                                  QColor(214, 39, 40),   QColor(148, 103, 189), QColor(140, 86, 75),
                                  QColor(227, 119, 194), QColor(127, 127, 127), QColor(188, 189, 34),
                                  QColor(23, 190, 207)};
  const int n = static_cast<int>(sizeof colors / sizeof colors[0]);
  QColor c = colors[i % n];
  if (i >= n) c = c.lighter(130);
  return c;
}

LossCurvesView::LossCurvesView(QWidget* parent) : QWidget(parent) {
  auto* outer = new QVBoxLayout(this);
  auto* controls = new QHBoxLayout;
  log_ = new QCheckBox(tr("Log scale"), this);
  log_->setObjectName("loss_log_scale");
  smooth_ = new QSlider(Qt::Horizontal, this);
  smooth_->setObjectName("loss_smoothing");
  smooth_->setRange(0, 99);
  smooth_->setMaximumWidth(200);
  smooth_label_ = new QLabel(tr("Smoothing 0.00"), this);
  controls->addWidget(log_);
  controls->addSpacing(16);
  controls->addWidget(smooth_label_);
  controls->addWidget(smooth_);
  controls->addStretch(1);
  outer->addLayout(controls);

  auto* grid = new QGridLayout;
  auto make = [&](const QString& title, const QString& y, const QString& stem, int row, int col) {
    auto* p = new PlotCanvas(this);
    p->set_title(title);
    p->set_axis_labels(tr("step"), y);
    p->set_export_name(stem);
    p->setMinimumSize(220, 160);
    grid->addWidget(p, row, col);
    return p;
  };
  loss_ = make(tr("Loss"), tr("loss"), "loss", 0, 0);
  layers_ = make(tr("Stage-1 loss per layer"), tr("1 − cos"), "stage1_layers", 0, 1);
  perplexity_ = make(tr("Held-out perplexity"), tr("perplexity"), "perplexity", 0, 2);
  lr_ = make(tr("Learning rate"), tr("lr"), "learning_rate", 1, 0);
  grad_norm_ = make(tr("Gradient norm"), tr("‖g‖ before clipping"), "grad_norm", 1, 1);
  throughput_ = make(tr("Throughput"), tr("tokens/s"), "tokens_per_second", 1, 2);
  outer->addLayout(grid, 1);
  loss_->set_legend_visible(true);
  perplexity_->set_legend_visible(true);

  ppl_student_ = perplexity_->add_curve(tr("student"), series_color(0));
  ppl_teacher_ = perplexity_->add_reference_line(tr("teacher"), series_color(3));
  lr_curve_ = lr_->add_curve(tr("lr"), series_color(2));
  grad_curve_ = grad_norm_->add_curve(tr("grad norm"), series_color(4));
  tps_curve_ = throughput_->add_curve(tr("tokens/s"), series_color(5));

  connect(log_, &QCheckBox::toggled, this, [this](bool on) { set_log_scale(on); });
  connect(smooth_, &QSlider::valueChanged, this, [this](int v) { set_smoothing(v / 100.0); });
}

void LossCurvesView::set_data(const RunData* data) {
  data_ = data;
  for (auto* p : {loss_, layers_}) {
    p->clear();
  }
  loss_curves_.clear();
  layer_curves_.clear();
  refresh(true);
}

void LossCurvesView::set_log_scale(bool on) {
  if (log_->isChecked() != on) log_->setChecked(on);
  loss_->set_log_y(on);
  layers_->set_log_y(on);
  perplexity_->set_log_y(on);
  refresh(true);
}

void LossCurvesView::set_smoothing(double smoothing) {
  smoothing_ = smoothing;
  const int v = static_cast<int>(std::lround(smoothing * 100));
  if (smooth_->value() != v) smooth_->setValue(v);
  smooth_label_->setText(tr("Smoothing %1").arg(smoothing, 0, 'f', 2));
  refresh(true);
}

void LossCurvesView::set_marker(double global_step) {
  marker_ = global_step;
  refresh(true);
}

void LossCurvesView::refresh(bool force) {
  const uint64_t rev = data_ ? data_->revision() : 0;
  if (!force && rev == drawn_revision_) return;
  drawn_revision_ = rev;
  redraw();
}

void LossCurvesView::sync_curves(PlotCanvas* plot, std::map<std::string, int>& handles,
                                 const std::vector<std::string>& names, bool smooth) {
  for (const auto& name : names) {
    if (!handles.count(name)) {
      const int i = static_cast<int>(handles.size());
      // "cosine.layers.3" → "cosine L3": legends stay narrow.
      QString label = QString::fromStdString(name);
      label.replace(".layers.", " L");
      handles[name] = plot->add_curve(label, series_color(i), Qt::SolidLine, name == "total" ? 2.0 : 1.2);
    }
    const Series& s = data_->metric(name);
    plot->set_curve_data(handles[name], s.x, smooth ? smoothed(s.y, smoothing_) : s.y);
  }
}

void LossCurvesView::redraw() {
  if (!data_) return;
  std::vector<std::string> loss_names = {"total"}, layer_names;
  for (const auto& part : data_->loss_part_names())
    (is_layer_part(part) ? layer_names : loss_names).push_back(part);
  sync_curves(loss_, loss_curves_, loss_names, true);
  sync_curves(layers_, layer_curves_, layer_names, true);
  layers_->set_legend_visible(!layer_names.empty() && layer_names.size() <= 12);

  const Series& ppl = data_->eval("heldout_perplexity");
  perplexity_->set_curve_data(ppl_student_, ppl.x, ppl.y);
  const Series& teacher = data_->eval("teacher_heldout_perplexity");
  perplexity_->set_reference_line(ppl_teacher_, teacher.y.isEmpty() ? NAN : teacher.y.back());
  const Series& lr = data_->metric("lr");
  lr_->set_curve_data(lr_curve_, lr.x, lr.y);
  const Series& g = data_->metric("grad_norm");
  grad_norm_->set_curve_data(grad_curve_, g.x, smoothed(g.y, smoothing_));
  const Series& tps = data_->metric("tokens_per_second");
  throughput_->set_curve_data(tps_curve_, tps.x, smoothed(tps.y, smoothing_));
  for (auto* p : {loss_, layers_, perplexity_, lr_, grad_norm_, throughput_}) {
    p->set_vertical_marker(0, data_->stage1_steps() > 0 && data_->total_steps() > data_->stage1_steps()
                                  ? data_->stage1_steps()
                                  : NAN);
    p->set_vertical_marker(1, marker_);
    p->rescale();
  }
}

}  // namespace hedgelab::views
