#include "views/kernel_view.h"

#include <QComboBox>
#include <QGridLayout>
#include <QLabel>
#include <QVBoxLayout>
#include <cmath>

namespace hedgelab::views {

KernelView::KernelView(QWidget* parent) : QWidget(parent) {
  auto* layout = new QVBoxLayout(this);
  picker_ = new LayerHeadPicker(this);
  which_ = new QComboBox(this);
  which_->addItems({tr("W_q (query map)"), tr("W_k (key map)")});
  picker_->row()->addWidget(new QLabel(tr("Feature map"), this));
  picker_->row()->addWidget(which_);
  picker_->row()->addStretch(1);
  picker_->row()->addWidget(make_export_button(this, &plots_));
  layout->addWidget(picker_);
  caption_ = new QLabel(tr("No probe snapshot yet."), this);
  caption_->setWordWrap(true);
  layout->addWidget(caption_);
  auto* grid = new QGridLayout;
  log_scatter_ = new PlotCanvas(this);
  log_scatter_->set_title(tr("log P against log ā (pairs s ≤ t)"));
  log_scatter_->set_axis_labels(tr("log P (teacher)"), tr("log ā (student)"));
  log_scatter_->set_diagonal_visible(true);
  log_scatter_->set_pan_zoom(true);
  log_points_ = log_scatter_->add_scatter(tr("pairs"), QColor(31, 119, 180), 4.0);
  logit_scatter_ = new PlotCanvas(this);
  logit_scatter_->set_title(tr("Teacher logit against feature logit"));
  logit_scatter_->set_axis_labels(tr("q·k/√P"), tr("log φ_q(q)ᵀφ_k(k)"));
  logit_scatter_->set_pan_zoom(true);
  logit_points_ = logit_scatter_->add_scatter(tr("pairs"), QColor(214, 39, 40), 4.0);
  rho_ = new PlotCanvas(this);
  rho_->set_title(tr("Spearman ρ per head"));
  rho_->set_axis_labels(tr("head"), tr("ρ"));
  rho_bars_ = rho_->add_bars(tr("ρ"), QColor(44, 160, 44), 0.7);
  rho_current_ = rho_->add_bars(tr("selected head"), QColor(255, 127, 14), 0.7);
  weights_ = new PlotCanvas(this);
  weights_->set_axis_labels(tr("P (head dimension)"), tr("m (feature)"));
  weights_->set_heatmap_color_bar(true, tr("weight"));
  grid->addWidget(log_scatter_, 0, 0);
  grid->addWidget(logit_scatter_, 0, 1);
  grid->addWidget(rho_, 1, 0);
  grid->addWidget(weights_, 1, 1);
  layout->addLayout(grid, 1);
  plots_.add(log_scatter_, "kernel_log_attention");
  plots_.add(logit_scatter_, "kernel_logits");
  plots_.add(rho_, "kernel_spearman");
  plots_.add(weights_, "kernel_feature_weights");
  log_scatter_->set_hover_text([](double x, double y) {
    return QObject::tr("P = %1, ā = %2").arg(std::exp(x), 0, 'g', 3).arg(std::exp(y), 0, 'g', 3);
  });
  weights_->set_hover_text([this](double x, double y) {
    const int c = static_cast<int>(std::lround(x)), r = static_cast<int>(std::lround(y));
    const double v = weights_->heatmap_value(r, c);
    return std::isnan(v) ? QString() : tr("feature %1, dimension %2: %3").arg(r).arg(c).arg(v, 0, 'f', 4);
  });
  connect(picker_, &LayerHeadPicker::changed, this, [this](int l, int h) {
    redraw();
    Q_EMIT selection_changed(l, h);
  });
  connect(which_, qOverload<int>(&QComboBox::currentIndexChanged), this, [this] { redraw(); });
  connect(rho_, &PlotCanvas::clicked, this,
          [this](double x, double) { set_selection(layer(), static_cast<int>(std::lround(x))); });
}

void KernelView::set_snapshot(std::shared_ptr<const snapshot::ProbeSnapshot> snapshot) {
  snapshot_ = std::move(snapshot);
  if (snapshot_) picker_->set_bounds(snapshot_->layers, snapshot_->heads);
  redraw();
}

void KernelView::set_selection(int layer, int head) {
  picker_->set_selection(layer, head);
}

void KernelView::show_key_weights(bool on) {
  which_->setCurrentIndex(on ? 1 : 0);
}

void KernelView::redraw() {
  const auto& s = snapshot_;
  if (!s || s->attention.empty()) {
    caption_->setText(tr("No probe snapshot yet."));
    log_scatter_->set_scatter_data(log_points_, {}, {});
    logit_scatter_->set_scatter_data(logit_points_, {}, {});
    rho_->set_bar_data(rho_bars_, {}, {});
    rho_->set_bar_data(rho_current_, {}, {});
    weights_->clear_heatmap();
    for (auto* p : {log_scatter_, logit_scatter_, rho_, weights_})
      p->replot();
    return;
  }
  const int l = picker_->layer(), h = picker_->head();
  const auto& a = s->head(l, h);
  const auto [lx, ly] = log_attention_pairs(a);
  log_scatter_->set_scatter_data(log_points_, lx, ly);
  const auto [tx, fy] = logit_pairs(a);
  logit_scatter_->set_scatter_data(logit_points_, tx, fy);
  logit_scatter_->set_axis_labels(tr("q·k/√P"),
                                  s->stage == "stage2" ? tr("log C_tᵀB_s") : tr("log φ_q(q)ᵀφ_k(k)"));
  QVector<double> heads, rho, sel_x, sel_y;
  for (int k = 0; k < s->heads; ++k) {
    heads << k;
    rho << s->head(l, k).spearman;
  }
  sel_x << h;
  sel_y << a.spearman;
  rho_->set_bar_data(rho_bars_, heads, rho);
  rho_->set_bar_data(rho_current_, sel_x, sel_y);
  rho_->set_x_range(-0.6, s->heads - 0.4);
  rho_->set_y_range(std::min(0.0, *std::min_element(rho.begin(), rho.end())) - 0.05, 1.05);
  const bool key = which_->currentIndex() == 1;
  const snapshot::Grid* w = nullptr;
  if (l < static_cast<int64_t>(s->features.size())) {
    const auto& f = s->features[static_cast<size_t>(l)];
    const auto& maps = key ? f.k : f.q;
    if (h < static_cast<int64_t>(maps.size())) w = &maps[static_cast<size_t>(h)];
  }
  if (w && !w->empty()) {
    double m = 1e-9;
    for (float v : w->values)
      if (std::isfinite(v)) m = std::max(m, static_cast<double>(std::abs(v)));
    weights_->set_heatmap(*w, -m, m, ColorScale::Diverging);
    weights_->set_title(key ? tr("Learned W_k, layer %1 head %2").arg(l).arg(h)
                            : tr("Learned W_q, layer %1 head %2").arg(l).arg(h));
  } else {
    weights_->clear_heatmap();
    weights_->set_title(tr("No feature-map weights in this snapshot"));
  }
  log_scatter_->rescale();
  logit_scatter_->rescale();
  for (auto* p : {log_scatter_, logit_scatter_, rho_, weights_})
    p->replot();
  caption_->setText(
      tr("%1, %2 step %3 — layer %4, head %5: %6 pairs; Spearman ρ %7 (1: the feature map ranks "
         "key positions as the softmax does).")
          .arg(QString::fromStdString(s->run), QString::fromStdString(s->stage))
          .arg(s->step)
          .arg(l)
          .arg(h)
          .arg(tx.size())
          .arg(a.spearman, 0, 'f', 3));
}

}  // namespace hedgelab::views
