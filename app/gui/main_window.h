// The desktop lab's window: wiring only. The run panel and progress (RunPanel) drive a RunController (the
// worker thread owns the run); the open sessions (the live run and files) are listed in the Sessions dock;
// the views draw the selected one on a timer and several checked ones side by side in the comparison view.
// Docks can be rearranged; their layout, the recent files and the last choices persist in QSettings.
#pragma once

#include <QMainWindow>
#include <QPointer>
#include <memory>
#include <vector>

#include "app/gui/run_controller.h"
#include "app/gui/session_document.h"

class QAction;
class QDockWidget;
class QLabel;
class QListWidget;
class QMenu;
class QSlider;
class QTimer;

namespace hedgelab::views {
class AlignmentView;
class ComparisonView;
class LossCurvesView;
}  // namespace hedgelab::views

namespace hedgelab::gui {

class RunPanel;
class InspectionDocks;

struct WindowOptions {
  bool cuda_available = false;
  QString sessions_folder;  // overrides the run panel's (tests, screenshots)
  bool teaching = false;
  bool restore_settings = true;
};

class MainWindow : public QMainWindow {
  Q_OBJECT

 public:
  explicit MainWindow(const WindowOptions& options, QWidget* parent = nullptr);
  ~MainWindow() override;

  RunController& controller() { return *controller_; }
  RunPanel& run_panel() { return *panel_; }

  // File ▸ Open; false with the error shown (or returned in `error` when not null: no dialog then).
  bool open_session(const QString& path, QString* error = nullptr);
  // Resumes a stopped or crashed session (a new file continues it).
  bool resume_session(const QString& path, QString* error = nullptr);
  // Starts a run with the run panel's recipe; `stop_at_step` > 0 stops after that many steps.
  bool start_run(qint64 stop_at_step = 0);
  // The Demo entry: the demo teacher and preset, teaching mode on, and a run started.
  void start_demo(qint64 stop_at_step = 0);
  void set_teaching_mode(bool on);

  // Number of open sessions (the live run counts once it exists) and which one the views show.
  int document_count() const;
  void select_document(int index);
  // Names of the views --screenshot --view understands, and the widget each names (null when unknown).
  QStringList view_names() const;
  QWidget* view_widget(const QString& name) const;
  // Redraws every view now (the timer does it otherwise).
  void refresh_views(bool force = true);

  views::LossCurvesView* loss_view() const { return loss_view_; }
  views::AlignmentView* alignment_view() const { return alignment_view_; }
  views::ComparisonView* comparison_view() const { return comparison_view_; }

 protected:
  void closeEvent(QCloseEvent* event) override;
  void dragEnterEvent(QDragEnterEvent* event) override;
  void dropEvent(QDropEvent* event) override;

 private:
  struct Document;
  void build_actions();
  QWidget* explained(QWidget* view, const QString& id);  // the view under its teaching explanation
  void build_docks();
  void update_actions(UiRunState state);
  void update_status();
  void update_documents_list();
  void update_step_slider();
  void show_current();
  void update_comparison();
  void add_recent(const QString& path);
  void rebuild_recent_menu();
  void choose_step(int index);
  void save_settings();
  void restore_settings();
  const views::RunData* current_data() const;
  void show_error(const QString& title, const QString& message);
  void show_tour_stop(const QString& view, const QString& focus);

  WindowOptions options_;
  std::unique_ptr<RunController> controller_;
  std::vector<std::unique_ptr<Document>> documents_;  // [0] is the live run once one started
  int current_ = -1;
  bool live_listed_ = false;

  RunPanel* panel_ = nullptr;
  views::LossCurvesView* loss_view_ = nullptr;
  views::AlignmentView* alignment_view_ = nullptr;
  views::ComparisonView* comparison_view_ = nullptr;
  std::unique_ptr<InspectionDocks> inspection_;
  QListWidget* sessions_list_ = nullptr;
  QSlider* step_slider_ = nullptr;
  QLabel* step_label_ = nullptr;
  bool follow_newest_ = true;
  QLabel* status_device_ = nullptr;
  QLabel* status_memory_ = nullptr;
  QLabel* status_state_ = nullptr;
  QTimer* repaint_timer_ = nullptr;
  QTimer* status_timer_ = nullptr;
  QMenu* recent_menu_ = nullptr;
  QMenu* view_menu_ = nullptr;
  QAction *start_ = nullptr, *pause_ = nullptr, *stop_ = nullptr, *resume_session_ = nullptr,
          *teaching_ = nullptr;
  std::vector<QDockWidget*> docks_;
  std::vector<QLabel*> explanations_;
  bool closing_ = false;
};

// Resident memory of this process in MiB (Linux /proc), −1 when unknown.
double resident_memory_mib();

}  // namespace hedgelab::gui
