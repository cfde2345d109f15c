#include "views/alignment_view.h"

#include <QLabel>
#include <QSplitter>
#include <QVBoxLayout>
#include <cmath>

#include "views/loss_curves_view.h"

namespace hedgelab::views {

snapshot::Grid alignment_history(const std::vector<SnapshotEntry>& snapshots, bool free_running) {
  int64_t layers = 0;
  for (const auto& s : snapshots)
    layers = std::max<int64_t>(layers, static_cast<int64_t>(s.alignment.size()));
  snapshot::Grid g(layers, static_cast<int64_t>(snapshots.size()));
  for (size_t c = 0; c < snapshots.size(); ++c)
    for (int64_t l = 0; l < layers; ++l) {
      const auto& a = snapshots[c].alignment;
      g.at(l, static_cast<int64_t>(c)) =
          l < static_cast<int64_t>(a.size())
              ? static_cast<float>(free_running ? a[l].free_running : a[l].teacher_forced)
              : std::nanf("");
    }
  return g;
}

AlignmentView::AlignmentView(QWidget* parent) : QWidget(parent) {
  auto* layout = new QVBoxLayout(this);
  caption_ = new QLabel(tr("No probe snapshot yet."), this);
  layout->addWidget(caption_);
  auto* split = new QSplitter(Qt::Vertical, this);
  bars_ = new PlotCanvas(split);
  bars_->set_title(tr("Cosine alignment per layer"));
  bars_->set_axis_labels(tr("layer"), tr("cos(student, teacher)"));
  bars_->set_export_name("alignment_bars");
  bars_->set_legend_visible(true);
  forced_bars_ = bars_->add_bars(tr("teacher-forced"), series_color(0), 0.38, -0.2);
  free_bars_ = bars_->add_bars(tr("free-running"), series_color(1), 0.38, 0.2);
  auto* maps = new QSplitter(Qt::Horizontal, split);
  forced_ = new PlotCanvas(maps);
  forced_->set_title(tr("Teacher-forced, layer × snapshot"));
  forced_->set_export_name("alignment_teacher_forced");
  free_ = new PlotCanvas(maps);
  free_->set_title(tr("Free-running, layer × snapshot"));
  free_->set_export_name("alignment_free_running");
  for (auto* p : {forced_, free_}) {
    p->set_axis_labels(tr("step"), tr("layer"));
    p->set_heatmap_color_bar(true, tr("cosine"));
  }
  split->addWidget(bars_);
  split->addWidget(maps);
  layout->addWidget(split, 1);
  // Hover on either history map: the layer, the snapshot's step and the cosine there.
  for (PlotCanvas* map : {forced_, free_})
    map->set_hover_text([this, map](double x, double y) {
      const int c = static_cast<int>(std::lround(x)), l = static_cast<int>(std::lround(y));
      const double v = map->heatmap_value(l, c);
      if (!data_ || std::isnan(v) || c >= static_cast<int>(data_->snapshots().size())) return QString();
      return tr("layer %1, step %2: %3").arg(l).arg(data_->snapshots()[c].x).arg(v, 0, 'f', 4);
    });
}

void AlignmentView::set_data(const RunData* data) {
  data_ = data;
  index_ = -1;
  refresh(true);
}

void AlignmentView::set_snapshot_index(int index) {
  index_ = index;
  refresh(true);
}

void AlignmentView::refresh(bool force) {
  const uint64_t rev = data_ ? data_->revision() : 0;
  if (!force && rev == drawn_revision_) return;
  drawn_revision_ = rev;
  redraw();
}

void AlignmentView::redraw() {
  const auto* snaps = data_ ? &data_->snapshots() : nullptr;
  if (!snaps || snaps->empty()) {
    caption_->setText(tr("No probe snapshot yet: alignment appears at the first probe (data.probe_every)."));
    bars_->set_bar_data(forced_bars_, {}, {});
    bars_->set_bar_data(free_bars_, {}, {});
    forced_->clear_heatmap();
    free_->clear_heatmap();
    bars_->replot();
    return;
  }
  const int i =
      index_ >= 0 && index_ < static_cast<int>(snaps->size()) ? index_ : static_cast<int>(snaps->size()) - 1;
  const SnapshotEntry& e = (*snaps)[i];
  QVector<double> x, tf, fr;
  for (size_t l = 0; l < e.alignment.size(); ++l) {
    x.push_back(static_cast<double>(l));
    tf.push_back(e.alignment[l].teacher_forced);
    fr.push_back(e.alignment[l].free_running);
  }
  bars_->set_bar_data(forced_bars_, x, tf);
  bars_->set_bar_data(free_bars_, x, fr);
  bars_->rescale();
  bars_->set_x_range(-0.7, std::max<double>(0.7, x.size() - 0.3));
  caption_->setText(tr("%1 step %2 (global step %3), snapshot %4 of %5")
                        .arg(QString::fromStdString(e.stage))
                        .arg(e.step)
                        .arg(e.x)
                        .arg(i + 1)
                        .arg(snaps->size()));
  QStringList steps;
  for (const auto& s : *snaps)
    steps << QString::number(s.x);
  const snapshot::Grid forced = alignment_history(*snaps, false), free = alignment_history(*snaps, true);
  float lo = 1.0f;
  for (float v : forced.values)
    if (std::isfinite(v)) lo = std::min(lo, v);
  for (float v : free.values)
    if (std::isfinite(v)) lo = std::min(lo, v);
  forced_->set_heatmap(forced, std::min(lo, 0.99f), 1.0, ColorScale::Sequential, steps);
  free_->set_heatmap(free, std::min(lo, 0.99f), 1.0, ColorScale::Sequential, steps);
  forced_->set_vertical_marker(1, i);
  free_->set_vertical_marker(1, i);
}

}  // namespace hedgelab::views
