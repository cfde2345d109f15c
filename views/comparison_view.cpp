#include "views/comparison_view.h"

#include <QComboBox>
#include <QFileDialog>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QMenu>
#include <QMessageBox>
#include <QSplitter>
#include <QTableWidget>
#include <QTextStream>
#include <QVBoxLayout>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "views/loss_curves_view.h"

namespace hedgelab::views {

namespace {

void flatten(const nlohmann::json& j, const std::string& prefix, std::map<std::string, std::string>& out) {
  if (j.is_object()) {
    for (auto it = j.begin(); it != j.end(); ++it)
      flatten(it.value(), prefix.empty() ? it.key() : prefix + "." + it.key(), out);
  } else {
    out[prefix] = j.is_string() ? j.get<std::string>() : j.dump();
  }
}

QString csv_cell(QString s) {
  if (s.contains(',') || s.contains('"') || s.contains('\n')) return "\"" + s.replace("\"", "\"\"") + "\"";
  return s;
}

void add_csv_menu(QTableWidget* table, const QString& stem) {
  table->setContextMenuPolicy(Qt::CustomContextMenu);
  QObject::connect(table, &QWidget::customContextMenuRequested, table, [table, stem](const QPoint& at) {
    QMenu menu(table);
    menu.addAction(QObject::tr("Export table as CSV…"), table, [table, stem] {
      const QString path = QFileDialog::getSaveFileName(table, QObject::tr("Export table"), stem + ".csv",
                                                        QObject::tr("CSV (*.csv)"));
      QString error;
      if (!path.isEmpty() && !export_table_csv(table, path, &error))
        QMessageBox::warning(table, QObject::tr("Export"), error);
    });
    menu.exec(table->viewport()->mapToGlobal(at));
  });
}

}  // namespace

std::vector<std::pair<QString, QStringList>> recipe_differences(const QStringList& recipes) {
  std::vector<std::map<std::string, std::string>> flat(recipes.size());
  std::set<std::string> keys;
  for (int i = 0; i < recipes.size(); ++i) {
    const auto j = nlohmann::json::parse(recipes[i].toStdString(), nullptr, /*allow_exceptions=*/false);
    if (j.is_object()) flatten(j, "", flat[i]);
    for (const auto& [k, v] : flat[i])
      keys.insert(k);
  }
  std::vector<std::pair<QString, QStringList>> diffs;
  for (const auto& k : keys) {
    QStringList values;
    bool differs = false;
    for (size_t i = 0; i < flat.size(); ++i) {
      auto it = flat[i].find(k);
      values << (it == flat[i].end() ? QStringLiteral("—") : QString::fromStdString(it->second));
      if (i > 0 && values[static_cast<int>(i)] != values[0]) differs = true;
    }
    if (differs) diffs.emplace_back(QString::fromStdString(k), values);
  }
  return diffs;
}

bool export_table_csv(const QTableWidget* table, const QString& path, QString* error) {
  QString text;
  QTextStream out(&text);
  QStringList header;
  for (int c = 0; c < table->columnCount(); ++c) {
    auto* h = table->horizontalHeaderItem(c);
    header << csv_cell(h ? h->text() : QString::number(c));
  }
  out << header.join(',') << "\n";
  for (int r = 0; r < table->rowCount(); ++r) {
    QStringList row;
    for (int c = 0; c < table->columnCount(); ++c) {
      auto* item = table->item(r, c);
      row << csv_cell(item ? item->text() : QString());
    }
    out << row.join(',') << "\n";
  }
  out.flush();
  return write_text_file(path, text, error);
}

ComparisonView::ComparisonView(QWidget* parent) : QWidget(parent) {
  auto* layout = new QVBoxLayout(this);
  auto* top = new QHBoxLayout;
  top->addWidget(new QLabel(tr("Overlay"), this));
  metric_ = new QComboBox(this);
  metric_->setObjectName("comparison_metric");
  metric_->addItem(tr("held-out perplexity"), "eval:heldout_perplexity");
  metric_->addItem(tr("total loss"), "total");
  metric_->addItem(tr("learning rate"), "lr");
  metric_->addItem(tr("gradient norm"), "grad_norm");
  metric_->addItem(tr("tokens/s"), "tokens_per_second");
  top->addWidget(metric_);
  top->addStretch(1);
  layout->addLayout(top);
  auto* split = new QSplitter(Qt::Horizontal, this);
  plot_ = new PlotCanvas(split);
  plot_->set_title(tr("Runs by step"));
  plot_->set_axis_labels(tr("step"), metric_->currentText());
  plot_->set_export_name("comparison");
  plot_->set_legend_visible(true);
  auto* tables = new QSplitter(Qt::Vertical, split);
  diff_ = new QTableWidget(tables);
  diff_->setObjectName("recipe_diff");
  summary_ = new QTableWidget(tables);
  summary_->setObjectName("comparison_table");
  for (auto* t : {diff_, summary_}) {
    t->setEditTriggers(QAbstractItemView::NoEditTriggers);
    t->horizontalHeader()->setStretchLastSection(true);
    t->verticalHeader()->setVisible(false);
  }
  add_csv_menu(diff_, "recipe_diff");
  add_csv_menu(summary_, "comparison_table");
  split->addWidget(plot_);
  split->addWidget(tables);
  split->setStretchFactor(0, 3);
  split->setStretchFactor(1, 2);
  layout->addWidget(split, 1);
  connect(metric_, &QComboBox::currentIndexChanged, this, [this] {
    plot_->set_axis_labels(tr("step"), metric_->currentText());
    refresh(true);
  });
}

void ComparisonView::set_runs(std::vector<ComparedRun> runs) {
  runs_ = std::move(runs);
  plot_->clear();
  for (size_t i = 0; i < runs_.size(); ++i)
    plot_->add_curve(runs_[i].title, series_color(static_cast<int>(i)));
  fill_tables();
  refresh(true);
}

void ComparisonView::set_metric(const QString& name) {
  const int i = metric_->findData(name);
  if (i >= 0) metric_->setCurrentIndex(i);
}

void ComparisonView::refresh(bool force) {
  uint64_t rev = 0;
  for (const auto& r : runs_)
    rev = rev * 1315423911ull + (r.data ? r.data->revision() : 0);
  if (!force && rev == drawn_) return;
  drawn_ = rev;
  redraw();
}

void ComparisonView::redraw() {
  const QString key = metric_->currentData().toString();
  for (size_t i = 0; i < runs_.size(); ++i) {
    if (!runs_[i].data) continue;
    const Series& s = key.startsWith("eval:") ? runs_[i].data->eval(key.mid(5).toStdString())
                                              : runs_[i].data->metric(key.toStdString());
    plot_->set_curve_data(static_cast<int>(i), s.x, s.y);
  }
  plot_->rescale();
  fill_tables();
}

void ComparisonView::fill_tables() {
  QStringList recipes, titles;
  for (const auto& r : runs_) {
    recipes << r.recipe_json;
    titles << r.title;
  }
  const auto diffs = recipe_differences(recipes);
  diff_->clear();
  diff_->setColumnCount(1 + static_cast<int>(runs_.size()));
  diff_->setHorizontalHeaderLabels(QStringList{tr("recipe field")} + titles);
  diff_->setRowCount(static_cast<int>(diffs.size()));
  for (int r = 0; r < static_cast<int>(diffs.size()); ++r) {
    diff_->setItem(r, 0, new QTableWidgetItem(diffs[r].first));
    for (int c = 0; c < diffs[r].second.size(); ++c)
      diff_->setItem(r, c + 1, new QTableWidgetItem(diffs[r].second[c]));
  }
  summary_->clear();
  const QStringList header = {
      tr("session"),        tr("run"),     tr("perplexity"),   tr("ratio to teacher"), tr("stage-1 tokens"),
      tr("stage-2 tokens"), tr("seconds"), tr("stopped early")};
  summary_->setColumnCount(header.size());
  summary_->setHorizontalHeaderLabels(header);
  int row = 0;
  summary_->setRowCount(0);
  for (const auto& run : runs_) {
    if (!run.data) continue;
    for (const auto& s : run.data->summary()) {
      summary_->insertRow(row);
      const QStringList cells = {run.title,
                                 QString::fromStdString(s.run),
                                 QString::number(s.perplexity, 'f', 4),
                                 QString::number(s.ratio_to_teacher, 'f', 4),
                                 QString::number(s.stage1_tokens),
                                 QString::number(s.stage2_tokens),
                                 QString::number(s.seconds, 'f', 1),
                                 s.stopped_early ? tr("yes") : tr("no")};
      for (int c = 0; c < cells.size(); ++c)
        summary_->setItem(row, c, new QTableWidgetItem(cells[c]));
      ++row;
    }
  }
}

}  // namespace hedgelab::views
