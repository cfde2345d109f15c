#include "views/inspection_common.h"

#include <QComboBox>
#include <QDialog>
#include <QDialogButtonBox>
#include <QDir>
#include <QFileDialog>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QMessageBox>
#include <QPushButton>
#include <cmath>

namespace hedgelab::views {

LayerHeadPicker::LayerHeadPicker(QWidget* parent, bool with_head) : QWidget(parent) {
  row_ = new QHBoxLayout(this);
  row_->setContentsMargins(0, 0, 0, 0);
  row_->addWidget(new QLabel(tr("Layer"), this));
  layer_ = new QSpinBox(this);
  layer_->setRange(0, 0);
  row_->addWidget(layer_);
  head_ = new QSpinBox(this);
  head_->setRange(0, 0);
  if (with_head) {
    row_->addWidget(new QLabel(tr("Head"), this));
    row_->addWidget(head_);
  } else {
    head_->hide();
  }
  auto emit_changed = [this] { Q_EMIT changed(layer(), head()); };
  connect(layer_, qOverload<int>(&QSpinBox::valueChanged), this, emit_changed);
  connect(head_, qOverload<int>(&QSpinBox::valueChanged), this, emit_changed);
}

void LayerHeadPicker::set_bounds(int64_t layers, int64_t heads) {
  const QSignalBlocker a(layer_), b(head_);
  layer_->setRange(0, static_cast<int>(std::max<int64_t>(0, layers - 1)));
  head_->setRange(0, static_cast<int>(std::max<int64_t>(0, heads - 1)));
}

void LayerHeadPicker::set_selection(int layer, int head) {
  const int l = std::clamp(layer, layer_->minimum(), layer_->maximum());
  const int h = std::clamp(head, head_->minimum(), head_->maximum());
  if (l == layer_->value() && h == head_->value()) return;
  {
    const QSignalBlocker a(layer_), b(head_);
    layer_->setValue(l);
    head_->setValue(h);
  }
  Q_EMIT changed(l, h);
}

int LayerHeadPicker::layer() const {
  return layer_->value();
}

int LayerHeadPicker::head() const {
  return head_->value();
}

bool NamedPlots::export_all(const QString& dir, const QString& format, QString* error) const {
  if (!QDir().mkpath(dir)) {
    if (error) *error = QObject::tr("%1: cannot create the folder").arg(dir);
    return false;
  }
  for (const auto& [plot, name] : plots) {
    const QString stem = QDir(dir).filePath(name);
    if (!plot->export_to(stem + "." + format, error)) return false;
    if (!plot->export_csv(stem + ".csv", error)) return false;
  }
  return true;
}

QWidget* make_export_button(QWidget* parent, const NamedPlots* plots, std::function<void()> prepare) {
  auto* button = new QPushButton(QObject::tr("Export…"), parent);
  button->setToolTip(QObject::tr("Every plot of this view as PNG, SVG or PDF, and its data as CSV"));
  QObject::connect(button, &QPushButton::clicked, parent, [parent, plots, prepare] {
    const QString dir = QFileDialog::getExistingDirectory(parent, QObject::tr("Export into folder"));
    if (dir.isEmpty()) return;
    QDialog ask(parent);
    ask.setWindowTitle(QObject::tr("Export format"));
    auto* form = new QFormLayout(&ask);
    auto* format = new QComboBox(&ask);
    format->addItems({"png", "svg", "pdf"});
    form->addRow(QObject::tr("Plots as"), format);
    auto* buttons = new QDialogButtonBox(QDialogButtonBox::Ok | QDialogButtonBox::Cancel, &ask);
    form->addRow(buttons);
    QObject::connect(buttons, &QDialogButtonBox::accepted, &ask, &QDialog::accept);
    QObject::connect(buttons, &QDialogButtonBox::rejected, &ask, &QDialog::reject);
    if (ask.exec() != QDialog::Accepted) return;
    if (prepare) prepare();
    QString error;
    if (!plots->export_all(dir, format->currentText(), &error))
      QMessageBox::warning(parent, QObject::tr("Export failed"), error);
  });
  return button;
}

QStringList token_labels(const snapshot::ProbeSnapshot& s) {
  QStringList out;
  for (const auto& t : s.tokens) {
    QString q = QString::fromStdString(t);
    q.replace(' ', QChar(0x2423)).replace('\n', QChar(0x21B5)).replace('\t', QChar(0x21E5));
    out << q;
  }
  return out;
}

snapshot::Grid row_normalised(const snapshot::Grid& g) {
  snapshot::Grid out(g.rows, g.cols);
  for (int64_t t = 0; t < g.rows; ++t) {
    double z = 0.0;
    for (int64_t s = 0; s <= t && s < g.cols; ++s)
      z += std::max(0.0f, g.at(t, s));
    if (z <= 0.0) continue;
    for (int64_t s = 0; s <= t && s < g.cols; ++s)
      out.at(t, s) = static_cast<float>(std::max(0.0f, g.at(t, s)) / z);
  }
  return out;
}

snapshot::Grid difference(const snapshot::Grid& a, const snapshot::Grid& b) {
  snapshot::Grid out(a.rows, a.cols);
  if (a.rows != b.rows || a.cols != b.cols) return out;
  for (size_t i = 0; i < a.values.size(); ++i)
    out.values[i] = a.values[i] - b.values[i];
  return out;
}

double grid_max(std::initializer_list<const snapshot::Grid*> grids) {
  double m = 0.0;
  for (const auto* g : grids)
    for (float v : g->values)
      if (std::isfinite(v)) m = std::max(m, static_cast<double>(v));
  return m;
}

std::pair<QVector<double>, QVector<double>> log_attention_pairs(const snapshot::HeadAttention& h) {
  QVector<double> x, y;
  const snapshot::Grid a = row_normalised(h.student);
  const int64_t n = std::min(h.teacher.rows, a.rows);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t s = 0; s <= t; ++s) {
      const double p = h.teacher.at(t, s), q = a.at(t, s);
      if (p > 0 && q > 0) {
        x << std::log(p);
        y << std::log(q);
      }
    }
  return {x, y};
}

std::pair<QVector<double>, QVector<double>> logit_pairs(const snapshot::HeadAttention& h) {
  QVector<double> x, y;
  const size_t n = std::min(h.teacher_logits.size(), h.feature_logits.size());
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(h.teacher_logits[i]) || !std::isfinite(h.feature_logits[i])) continue;
    x << h.teacher_logits[i];
    y << h.feature_logits[i];
  }
  return {x, y};
}

std::pair<QVector<double>, QVector<double>> histogram(const std::vector<float>& values, int bins, double lo,
                                                      double hi) {
  QVector<double> centres(bins), counts(bins, 0.0);
  const double width = (hi - lo) / bins;
  for (int b = 0; b < bins; ++b)
    centres[b] = lo + (b + 0.5) * width;
  if (!(width > 0)) return {centres, counts};
  for (float v : values) {
    if (!std::isfinite(v) || v < lo || v > hi) continue;
    const int b = std::min(bins - 1, static_cast<int>((v - lo) / width));
    counts[b] += 1.0;
  }
  return {centres, counts};
}

std::pair<QVector<double>, QVector<double>> grid_row(const snapshot::Grid& g, int64_t row) {
  QVector<double> x, y;
  if (row < 0 || row >= g.rows) return {x, y};
  for (int64_t c = 0; c < g.cols; ++c) {
    x << static_cast<double>(c);
    y << g.at(row, c);
  }
  return {x, y};
}

}  // namespace hedgelab::views
