#include "views/attention_view.h"

#include <QHeaderView>
#include <QLabel>
#include <QMouseEvent>
#include <QPainter>
#include <QSplitter>
#include <QTabWidget>
#include <QTableWidget>
#include <QVBoxLayout>
#include <cmath>

namespace hedgelab::views {

namespace {

// Attention weight in [0, hi] → a light-to-dark blue, as the thumbnails' colour scale.
QRgb thumb_color(double v, double hi) {
  const double t = hi > 0 ? std::clamp(v / hi, 0.0, 1.0) : 0.0;
  const int r = static_cast<int>(247 - t * (247 - 8)), g = static_cast<int>(251 - t * (251 - 48)),
            b = static_cast<int>(255 - t * (255 - 107));
  return qRgb(r, g, b);
}

constexpr int kThumbGap = 6;

}  // namespace

AttentionThumbnails::AttentionThumbnails(QWidget* parent) : QWidget(parent) {
  setMinimumSize(120, 80);
  setCursor(Qt::PointingHandCursor);
}

QSize AttentionThumbnails::sizeHint() const {
  return image_.isNull() ? QSize(400, 300) : image_.size();
}

void AttentionThumbnails::set_snapshot(std::shared_ptr<const snapshot::ProbeSnapshot> snapshot) {
  snapshot_ = std::move(snapshot);
  image_ = QImage();
  if (!snapshot_ || snapshot_->layers == 0 || snapshot_->heads == 0 || snapshot_->attention.empty()) {
    update();
    return;
  }
  const auto& s = *snapshot_;
  const int tp = static_cast<int>(s.head(0, 0).teacher.rows);
  cell_ = std::clamp(tp * 2, 24, 64);  // pixels per map
  const int L = static_cast<int>(s.layers), H = static_cast<int>(s.heads);
  const int w = H * (2 * cell_ + kThumbGap) + kThumbGap, h = L * (cell_ + kThumbGap) + kThumbGap;
  image_ = QImage(w, h, QImage::Format_RGB32);
  image_.fill(palette().color(QPalette::Window));
  for (int l = 0; l < L; ++l)
    for (int hd = 0; hd < H; ++hd) {
      const auto& a = s.head(l, hd);
      const snapshot::Grid st = row_normalised(a.student);
      const double hi = grid_max({&a.teacher, &st});
      const QRect r = thumbnail_rect(l, hd);
      for (int side = 0; side < 2; ++side) {
        const snapshot::Grid& g = side == 0 ? a.teacher : st;
        if (g.rows == 0) continue;
        for (int y = 0; y < cell_; ++y)
          for (int x = 0; x < cell_; ++x) {
            const int64_t row = y * g.rows / cell_, col = x * g.cols / cell_;
            image_.setPixel(r.x() + side * cell_ + x, r.y() + y, thumb_color(g.at(row, col), hi));
          }
      }
    }
  updateGeometry();
  update();
}

QRect AttentionThumbnails::thumbnail_rect(int layer, int head) const {
  return QRect(kThumbGap + head * (2 * cell_ + kThumbGap), kThumbGap + layer * (cell_ + kThumbGap), 2 * cell_,
               cell_);
}

void AttentionThumbnails::paintEvent(QPaintEvent*) {
  QPainter p(this);
  if (image_.isNull()) {
    p.drawText(rect(), Qt::AlignCenter, tr("No probe snapshot yet."));
    return;
  }
  p.drawImage(0, 0, image_);
  p.setPen(palette().color(QPalette::Mid));
  const auto& s = *snapshot_;
  for (int l = 0; l < s.layers; ++l)
    for (int h = 0; h < s.heads; ++h)
      p.drawRect(thumbnail_rect(l, h).adjusted(0, 0, -1, -1));
}

void AttentionThumbnails::mousePressEvent(QMouseEvent* event) {
  if (!snapshot_) return;
  for (int l = 0; l < snapshot_->layers; ++l)
    for (int h = 0; h < snapshot_->heads; ++h)
      if (thumbnail_rect(l, h).contains(event->position().toPoint())) {
        Q_EMIT head_clicked(l, h);
        return;
      }
}

AttentionView::AttentionView(QWidget* parent) : QWidget(parent) {
  auto* layout = new QVBoxLayout(this);
  picker_ = new LayerHeadPicker(this);
  picker_->row()->addStretch(1);
  picker_->row()->addWidget(make_export_button(this, &plots_));
  layout->addWidget(picker_);
  caption_ = new QLabel(tr("No probe snapshot yet."), this);
  caption_->setWordWrap(true);
  layout->addWidget(caption_);
  tabs_ = new QTabWidget(this);
  auto* detail = new QSplitter(Qt::Vertical, tabs_);
  auto* maps = new QSplitter(Qt::Horizontal, detail);
  teacher_ = new PlotCanvas(maps);
  student_ = new PlotCanvas(maps);
  diff_ = new PlotCanvas(maps);
  teacher_->set_title(tr("Teacher softmax P"));
  student_->set_title(tr("Student ā"));
  diff_->set_title(tr("P − ā"));
  for (auto* p : {teacher_, student_, diff_}) {
    p->set_axis_labels(tr("key s"), tr("query t"));
    p->set_hover_text([this](double x, double y) { return hover(x, y); });
  }
  plots_.add(teacher_, "attention_teacher");
  plots_.add(student_, "attention_student");
  plots_.add(diff_, "attention_difference");
  diff_->set_heatmap_color_bar(true, tr("P − ā"));
  student_->set_heatmap_color_bar(true, tr("weight"));
  table_ = new QTableWidget(detail);
  table_->setColumnCount(5);
  table_->setHorizontalHeaderLabels(
      {tr("head"), tr("entropy teacher"), tr("entropy student"), tr("row KL(P‖ā)"), tr("Spearman ρ")});
  table_->verticalHeader()->hide();
  table_->setEditTriggers(QAbstractItemView::NoEditTriggers);
  table_->setSelectionBehavior(QAbstractItemView::SelectRows);
  table_->setSelectionMode(QAbstractItemView::SingleSelection);
  table_->horizontalHeader()->setSectionResizeMode(QHeaderView::Stretch);
  detail->addWidget(maps);
  detail->addWidget(table_);
  detail->setStretchFactor(0, 3);
  detail->setStretchFactor(1, 1);
  tabs_->addTab(detail, tr("Maps"));
  thumbs_ = new AttentionThumbnails(tabs_);
  tabs_->addTab(thumbs_, tr("All layers × heads"));
  layout->addWidget(tabs_, 1);

  connect(picker_, &LayerHeadPicker::changed, this, [this](int l, int h) {
    redraw();
    Q_EMIT selection_changed(l, h);
  });
  connect(thumbs_, &AttentionThumbnails::head_clicked, this, [this](int l, int h) {
    set_selection(l, h);
    show_overview(false);
  });
  connect(table_, &QTableWidget::cellClicked, this, [this](int row, int) { set_selection(layer(), row); });
}

void AttentionView::set_snapshot(std::shared_ptr<const snapshot::ProbeSnapshot> snapshot) {
  snapshot_ = std::move(snapshot);
  if (snapshot_) picker_->set_bounds(snapshot_->layers, snapshot_->heads);
  thumbs_->set_snapshot(snapshot_);
  redraw();
}

void AttentionView::set_selection(int layer, int head) {
  picker_->set_selection(layer, head);
}

void AttentionView::show_overview(bool on) {
  tabs_->setCurrentIndex(on ? 1 : 0);
}

void AttentionView::redraw() {
  const auto& s = snapshot_;
  if (!s || s->attention.empty()) {
    caption_->setText(tr("No probe snapshot yet."));
    for (auto* p : {teacher_, student_, diff_})
      p->clear_heatmap();
    table_->setRowCount(0);
    return;
  }
  const int l = picker_->layer(), h = picker_->head();
  const auto& a = s->head(l, h);
  student_map_ = row_normalised(a.student);
  const double hi = std::max(1e-9, grid_max({&a.teacher, &student_map_}));
  const QStringList tokens = token_labels(*s);
  student_->set_title(s->stage == "stage2" ? tr("Implied attention (rows normalised)") : tr("Hedgehog ā"));
  teacher_->set_heatmap(a.teacher, 0.0, hi, ColorScale::Sequential, tokens, tokens);
  student_->set_heatmap(student_map_, 0.0, hi, ColorScale::Sequential, tokens, tokens);
  diff_->set_heatmap(difference(a.teacher, student_map_), -hi, hi, ColorScale::Diverging, tokens, tokens);
  for (auto* p : {teacher_, student_, diff_})
    p->replot();
  caption_->setText(tr("%1, %2 step %3 — layer %4, head %5: entropy teacher %6, student %7 nats; row KL %8; "
                       "ρ %9. Colour scale shared, 0 … %10.")
                        .arg(QString::fromStdString(s->run), QString::fromStdString(s->stage))
                        .arg(s->step)
                        .arg(l)
                        .arg(h)
                        .arg(a.teacher_entropy, 0, 'f', 3)
                        .arg(a.student_entropy, 0, 'f', 3)
                        .arg(a.row_kl, 0, 'f', 4)
                        .arg(a.spearman, 0, 'f', 3)
                        .arg(hi, 0, 'g', 3));
  fill_table();
}

void AttentionView::fill_table() {
  const auto& s = *snapshot_;
  const int l = picker_->layer();
  table_->setRowCount(static_cast<int>(s.heads));
  for (int h = 0; h < s.heads; ++h) {
    const auto& a = s.head(l, h);
    const double values[4] = {a.teacher_entropy, a.student_entropy, a.row_kl, a.spearman};
    table_->setItem(h, 0, new QTableWidgetItem(QString::number(h)));
    for (int c = 0; c < 4; ++c) {
      auto* item = new QTableWidgetItem(QString::number(values[c], 'f', 4));
      item->setData(Qt::UserRole, values[c]);
      item->setTextAlignment(Qt::AlignRight | Qt::AlignVCenter);
      table_->setItem(h, c + 1, item);
    }
  }
  const QSignalBlocker block(table_);
  table_->selectRow(picker_->head());
}

QString AttentionView::hover(double x, double y) const {
  if (!snapshot_ || snapshot_->attention.empty()) return {};
  const int c = static_cast<int>(std::lround(x)), r = static_cast<int>(std::lround(y));
  const auto& a = snapshot_->head(picker_->layer(), picker_->head());
  if (r < 0 || c < 0 || r >= a.teacher.rows || c >= a.teacher.cols) return {};
  const QStringList tokens = token_labels(*snapshot_);
  const QString qt = r < tokens.size() ? tokens[r] : QString::number(r);
  const QString ks = c < tokens.size() ? tokens[c] : QString::number(c);
  if (c > r) return tr("query %1 “%2”, key %3 “%4”: masked (the future)").arg(r).arg(qt).arg(c).arg(ks);
  const double p = a.teacher.at(r, c), q = student_map_.at(r, c);
  return tr("query %1 “%2” → key %3 “%4”\nP = %5\nā = %6\nP − ā = %7")
      .arg(r)
      .arg(qt)
      .arg(c)
      .arg(ks)
      .arg(p, 0, 'f', 4)
      .arg(q, 0, 'f', 4)
      .arg(p - q, 0, 'f', 4);
}

}  // namespace hedgelab::views
