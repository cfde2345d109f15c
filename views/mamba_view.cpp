#include "views/mamba_view.h"

#include <QComboBox>
#include <QGridLayout>
#include <QLabel>
#include <QStackedWidget>
#include <QTabWidget>
#include <QVBoxLayout>
#include <cmath>
#include <limits>

namespace hedgelab::views {

namespace {

QColor head_color(int h) {
  static const QColor palette[] = {QColor(31, 119, 180),  QColor(255, 127, 14),  QColor(44, 160, 44),
                                   QColor(214, 39, 40),   QColor(148, 103, 189), QColor(140, 86, 75),
                                   QColor(227, 119, 194), QColor(127, 127, 127), QColor(188, 189, 34),
                                   QColor(23, 190, 207)};
  return palette[h % 10];
}

constexpr int kGateBins = 40;

}  // namespace

MambaView::MambaView(QWidget* parent) : QWidget(parent) {
  auto* layout = new QVBoxLayout(this);
  picker_ = new LayerHeadPicker(this);
  conv_which_ = new QComboBox(this);
  conv_which_->addItems({tr("conv x"), tr("conv k"), tr("conv q")});
  picker_->row()->addWidget(new QLabel(tr("Conv taps"), this));
  picker_->row()->addWidget(conv_which_);
  picker_->row()->addStretch(1);
  picker_->row()->addWidget(make_export_button(this, &plots_, [this] { draw_all_tabs(); }));
  layout->addWidget(picker_);
  caption_ = new QLabel(this);
  caption_->setWordWrap(true);
  layout->addWidget(caption_);
  stack_ = new QStackedWidget(this);
  note_ = new QLabel(stack_);
  note_->setAlignment(Qt::AlignCenter);
  note_->setWordWrap(true);
  stack_->addWidget(note_);
  tabs_ = new QTabWidget(stack_);
  auto* tabs = tabs_;
  stack_->addWidget(tabs);
  layout->addWidget(stack_, 1);

  auto* time = new QWidget(tabs);
  auto* tg = new QGridLayout(time);
  delta_ = new PlotCanvas(time);
  delta_->set_title(tr("Δ_t per head"));
  delta_->set_axis_labels(tr("position t"), tr("Δ"));
  alpha_ = new PlotCanvas(time);
  alpha_->set_title(tr("α_t = exp(Δ_t A) per head"));
  alpha_->set_axis_labels(tr("position t"), tr("α"));
  norm_ = new PlotCanvas(time);
  norm_->set_title(tr("‖S_t‖ per head"));
  norm_->set_axis_labels(tr("position t"), tr("‖S_t‖_F"));
  for (auto* p : {delta_, alpha_, norm_})
    p->set_legend_visible(true);
  tg->addWidget(delta_, 0, 0);
  tg->addWidget(alpha_, 0, 1);
  tg->addWidget(norm_, 1, 0, 1, 2);
  tabs->addTab(time, tr("Δ, α, ‖S_t‖"));

  auto* gates = new QWidget(tabs);
  auto* gg = new QGridLayout(gates);
  gate_ = new PlotCanvas(gates);
  gate_->set_title(tr("Gate g(z_t), time × channel"));
  gate_->set_axis_labels(tr("channel"), tr("position t"));
  gate_->set_heatmap_color_bar(true, tr("g"));
  gate_hist_ = new PlotCanvas(gates);
  gate_hist_->set_title(tr("Gate values"));
  gate_hist_->set_axis_labels(tr("g"), tr("count"));
  hist_bars_ = gate_hist_->add_bars(tr("count"), QColor(31, 119, 180), 0.9);
  gg->addWidget(gate_, 0, 0);
  gg->addWidget(gate_hist_, 0, 1);
  tabs->addTab(gates, tr("Gate"));

  auto* state = new QWidget(tabs);
  auto* sg = new QGridLayout(state);
  final_ = new PlotCanvas(state);
  final_->set_axis_labels(tr("P (head dimension)"), tr("N (state)"));
  final_->set_heatmap_color_bar(true, tr("S_T"));
  conv_ = new PlotCanvas(state);
  conv_->set_axis_labels(tr("tap"), tr("channel"));
  conv_->set_heatmap_color_bar(true, tr("weight"));
  sg->addWidget(final_, 0, 0);
  sg->addWidget(conv_, 0, 1);
  tabs->addTab(state, tr("Final state, conv taps"));

  auto* duality = new QWidget(tabs);
  auto* dg = new QGridLayout(duality);
  teacher_ = new PlotCanvas(duality);
  teacher_->set_title(tr("Teacher softmax P"));
  implied_ = new PlotCanvas(duality);
  implied_->set_title(tr("Implied attention (rows normalised)"));
  implied_->set_heatmap_color_bar(true, tr("weight"));
  for (auto* p : {teacher_, implied_})
    p->set_axis_labels(tr("key s"), tr("query t"));
  dg->addWidget(teacher_, 0, 0);
  dg->addWidget(implied_, 0, 1);
  tabs->addTab(duality, tr("Implied attention"));

  plots_.add(delta_, "mamba_delta");
  plots_.add(alpha_, "mamba_alpha");
  plots_.add(norm_, "mamba_state_norm");
  plots_.add(gate_, "mamba_gate");
  plots_.add(gate_hist_, "mamba_gate_histogram");
  plots_.add(final_, "mamba_final_state");
  plots_.add(conv_, "mamba_conv_taps");
  plots_.add(teacher_, "mamba_teacher_attention");
  plots_.add(implied_, "mamba_implied_attention");

  auto map_hover = [this](PlotCanvas* p, QString what) {
    p->set_hover_text([this, p, what](double x, double y) {
      const int c = static_cast<int>(std::lround(x)), r = static_cast<int>(std::lround(y));
      const double v = p->heatmap_value(r, c);
      if (std::isnan(v)) return QString();
      const QStringList tokens = snapshot_ ? token_labels(*snapshot_) : QStringList();
      if (what == "attention" && r < tokens.size() && c < tokens.size())
        return tr("query %1 “%2” → key %3 “%4”: %5")
            .arg(r)
            .arg(tokens[r])
            .arg(c)
            .arg(tokens[c])
            .arg(v, 0, 'f', 4);
      if (what == "gate" && r < tokens.size())
        return tr("t = %1 “%2”, channel %3: g = %4").arg(r).arg(tokens[r]).arg(c).arg(v, 0, 'f', 4);
      return tr("row %1, column %2: %3").arg(r).arg(c).arg(v, 0, 'f', 4);
    });
  };
  map_hover(teacher_, "attention");
  map_hover(implied_, "attention");
  map_hover(gate_, "gate");
  map_hover(final_, "state");
  map_hover(conv_, "conv");

  connect(picker_, &LayerHeadPicker::changed, this, [this](int l, int h) {
    redraw();
    Q_EMIT selection_changed(l, h);
  });
  connect(conv_which_, qOverload<int>(&QComboBox::currentIndexChanged), this, [this] { redraw(); });
  // Hidden tabs are drawn when they are shown (a replot costs the same visible or not).
  connect(tabs_, &QTabWidget::currentChanged, this, [this](int tab) { draw_tab(tab); });
  redraw();
}

void MambaView::set_snapshot(std::shared_ptr<const snapshot::ProbeSnapshot> snapshot) {
  snapshot_ = std::move(snapshot);
  if (snapshot_) picker_->set_bounds(snapshot_->layers, snapshot_->heads);
  redraw();
}

void MambaView::set_selection(int layer, int head) {
  picker_->set_selection(layer, head);
}

void MambaView::set_conv(int which) {
  conv_which_->setCurrentIndex(std::clamp(which, 0, 2));
}

bool MambaView::showing_internals() const {
  return stack_->currentIndex() == 1;
}

QString MambaView::note() const {
  return note_->text();
}

void MambaView::set_head_curves(PlotCanvas* plot, std::vector<int>& ids, const snapshot::Grid& g) {
  while (static_cast<int64_t>(ids.size()) < g.rows) {
    const int h = static_cast<int>(ids.size());
    ids.push_back(plot->add_curve(tr("head %1").arg(h), head_color(h)));
  }
  for (size_t h = 0; h < ids.size(); ++h) {
    const auto [x, y] = grid_row(g, static_cast<int64_t>(h));
    plot->set_curve_data(ids[h], x, y);
    plot->set_curve_visible(ids[h], static_cast<int64_t>(h) < g.rows);
  }
  plot->rescale();
  // A y range around the data with 5% padding, never thinner than 1e-3 (α ≡ 1 at the start of stage 2).
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (float v : g.values)
    if (std::isfinite(v)) {
      lo = std::min(lo, static_cast<double>(v));
      hi = std::max(hi, static_cast<double>(v));
    }
  if (lo <= hi) {
    const double pad = std::max(0.05 * (hi - lo), 1e-3 * std::max(1.0, std::abs(hi)));
    plot->set_y_range(lo - pad, hi + pad);
  }
  plot->replot();
}

void MambaView::draw_all_tabs() {
  for (int tab = 0; tab < kTabs; ++tab)
    draw_tab(tab);
}

void MambaView::show_tab(int tab) {
  tabs_->setCurrentIndex(std::clamp(tab, 0, kTabs - 1));
  draw_tab(tabs_->currentIndex());  // also when it was current already
}

void MambaView::draw_tab(int tab) {
  const auto& s = snapshot_;
  if (tab < 0 || tab >= kTabs || !stale_[static_cast<size_t>(tab)] || !s || s->mixers.empty()) return;
  stale_[static_cast<size_t>(tab)] = false;
  const int l = std::min<int>(picker_->layer(), static_cast<int>(s->mixers.size()) - 1), h = picker_->head();
  const auto& m = s->mixers[static_cast<size_t>(l)];
  const QStringList tokens = token_labels(*s);
  auto symmetric = [](const snapshot::Grid& g) {
    double a = 1e-9;
    for (float v : g.values)
      if (std::isfinite(v)) a = std::max(a, static_cast<double>(std::abs(v)));
    return a;
  };
  if (tab == kTimeTab) {
    set_head_curves(delta_, delta_curves_, m.delta);
    set_head_curves(alpha_, alpha_curves_, m.alpha);
    set_head_curves(norm_, norm_curves_, m.state_norm);
  } else if (tab == kGateTab) {
    if (!m.gate.empty()) {
      double lo = 0.0, hi = 0.0;
      for (float v : m.gate.values)
        if (std::isfinite(v)) {
          lo = std::min(lo, static_cast<double>(v));
          hi = std::max(hi, static_cast<double>(v));
        }
      hi = std::max(hi, lo + 1e-6);
      gate_->set_heatmap(m.gate, lo, hi, ColorScale::Sequential, {}, tokens);
      const auto [centres, counts] = histogram(m.gate.values, kGateBins, lo, hi);
      gate_hist_->set_bar_data(hist_bars_, centres, counts);
      gate_hist_->set_x_range(lo, hi);
      gate_hist_->set_y_range(0, std::max(1.0, *std::max_element(counts.begin(), counts.end()) * 1.05));
      gate_hist_->set_title(tr("Gate values (%1 = t × channel)").arg(m.gate.values.size()));
    } else {
      gate_->clear_heatmap();
      gate_->set_title(tr("This mixer has no gate"));
      gate_hist_->set_bar_data(hist_bars_, {}, {});
    }
    gate_->replot();
    gate_hist_->replot();
  } else if (tab == kStateTab) {
    if (h < static_cast<int>(m.final_state.size()) && !m.final_state[static_cast<size_t>(h)].empty()) {
      const auto& st = m.final_state[static_cast<size_t>(h)];
      const double a = symmetric(st);
      final_->set_heatmap(st, -a, a, ColorScale::Diverging);
      final_->set_title(tr("Final state S_T, head %1").arg(h));
    } else {
      final_->clear_heatmap();
    }
    const snapshot::Grid* conv[3] = {&m.conv_x, &m.conv_k, &m.conv_q};
    const auto& taps = *conv[conv_which_->currentIndex()];
    if (!taps.empty()) {
      const double a = symmetric(taps);
      conv_->set_heatmap(taps, -a, a, ColorScale::Diverging);
      conv_->set_title(tr("%1 taps").arg(conv_which_->currentText()));
    } else {
      conv_->clear_heatmap();
      conv_->set_title(tr("This mixer has no convolutions"));
    }
    final_->replot();
    conv_->replot();
  } else {
    const auto& att = s->head(l, h);
    const snapshot::Grid implied = row_normalised(att.student);
    const double hi = std::max(1e-9, grid_max({&att.teacher, &implied}));
    teacher_->set_heatmap(att.teacher, 0.0, hi, ColorScale::Sequential, tokens, tokens);
    implied_->set_heatmap(implied, 0.0, hi, ColorScale::Sequential, tokens, tokens);
    teacher_->replot();
    implied_->replot();
  }
}

void MambaView::redraw() {
  const auto& s = snapshot_;
  if (!s) {
    note_->setText(tr("No probe snapshot yet."));
    caption_->clear();
    stack_->setCurrentIndex(0);
    return;
  }
  if (s->mixers.empty()) {
    note_->setText(tr("This is a %1 snapshot (step %2): stage 1 trains Hedgehog attention and has no Mamba "
                      "mixers yet. The internals appear with the first stage-2 snapshot.")
                       .arg(QString::fromStdString(s->stage))
                       .arg(s->step));
    caption_->clear();
    stack_->setCurrentIndex(0);
    return;
  }
  stack_->setCurrentIndex(1);
  stale_.fill(true);
  draw_tab(tabs_->currentIndex());
  const int l = std::min<int>(picker_->layer(), static_cast<int>(s->mixers.size()) - 1), h = picker_->head();
  const auto& m = s->mixers[static_cast<size_t>(l)];
  const auto& att = s->head(l, h);
  double mean_alpha = 0.0;
  for (float v : m.alpha.values)
    mean_alpha += v;
  mean_alpha /= std::max<size_t>(1, m.alpha.values.size());
  caption_->setText(tr("%1, %2 step %3 — layer %4, head %5: mean α %6 (1 = no decay); row KL of the implied "
                       "attention %7.")
                        .arg(QString::fromStdString(s->run), QString::fromStdString(s->stage))
                        .arg(s->step)
                        .arg(l)
                        .arg(h)
                        .arg(mean_alpha, 0, 'f', 4)
                        .arg(att.row_kl, 0, 'f', 4));
}

}  // namespace hedgelab::views
