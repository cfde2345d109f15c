// Several runs side by side: one metric of each overlaid by step, the differences between their recipes,
// and the comparison table (docs/method.md §5: held-out perplexity and the ratio to the teacher) of every
// run that has one. Tables export as CSV, the plot as PNG/SVG/PDF.
#pragma once

#include <QString>
#include <QWidget>
#include <vector>

#include "views/plot_canvas.h"
#include "views/run_data.h"

class QComboBox;
class QTableWidget;

namespace hedgelab::views {

struct ComparedRun {
  QString title;
  const RunData* data = nullptr;  // not owned
  QString recipe_json;            // the recipe it ran (JSON text)
};

class ComparisonView : public QWidget {
  Q_OBJECT

 public:
  explicit ComparisonView(QWidget* parent = nullptr);

  void set_runs(std::vector<ComparedRun> runs);
  void refresh(bool force = false);
  void set_metric(const QString& name);

  PlotCanvas* overlay_plot() const { return plot_; }
  QTableWidget* recipe_diff_table() const { return diff_; }
  QTableWidget* summary_table() const { return summary_; }

 private:
  void redraw();
  void fill_tables();

  std::vector<ComparedRun> runs_;
  uint64_t drawn_ = ~0ull;
  QComboBox* metric_ = nullptr;
  PlotCanvas* plot_ = nullptr;
  QTableWidget* diff_ = nullptr;
  QTableWidget* summary_ = nullptr;
};

// The leaves where recipes differ: (json path, value in each recipe; "—" where absent). Recipes that are not
// JSON objects count as empty.
std::vector<std::pair<QString, QStringList>> recipe_differences(const QStringList& recipe_json);

// A table's visible cells as CSV (header row first), written atomically.
bool export_table_csv(const QTableWidget* table, const QString& path, QString* error = nullptr);

}  // namespace hedgelab::views
