// Per-layer cosine alignment of the student with the teacher (docs/method.md §7): bars per layer for the
// snapshot being inspected (the newest while a run trains), teacher-forced beside free-running, and a
// layer × step heat map of each over every snapshot of the run.
#pragma once

#include <QWidget>

#include "views/plot_canvas.h"
#include "views/run_data.h"

class QLabel;

namespace hedgelab::views {

class AlignmentView : public QWidget {
  Q_OBJECT

 public:
  explicit AlignmentView(QWidget* parent = nullptr);

  void set_data(const RunData* data);
  void refresh(bool force = false);
  // Which snapshot the bars show: an index into RunData::snapshots(), or −1 for the newest.
  void set_snapshot_index(int index);

  PlotCanvas* bars_plot() const { return bars_; }
  PlotCanvas* forced_heatmap() const { return forced_; }
  PlotCanvas* free_heatmap() const { return free_; }

 private:
  void redraw();

  const RunData* data_ = nullptr;
  uint64_t drawn_revision_ = ~0ull;
  int index_ = -1;
  QLabel* caption_ = nullptr;
  PlotCanvas *bars_ = nullptr, *forced_ = nullptr, *free_ = nullptr;
  int forced_bars_ = -1, free_bars_ = -1;
};

// The heat map a list of snapshots gives: rows = layers, columns = snapshots; `free_running` picks the
// figure. Snapshots without alignment leave NaN columns.
snapshot::Grid alignment_history(const std::vector<SnapshotEntry>& snapshots, bool free_running);

}  // namespace hedgelab::views
