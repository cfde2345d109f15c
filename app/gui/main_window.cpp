#include "app/gui/main_window.h"

#include <QAction>
#include <QApplication>
#include <QCloseEvent>
#include <QDockWidget>
#include <QDragEnterEvent>
#include <QFile>
#include <QFileDialog>
#include <QFileInfo>
#include <QHBoxLayout>
#include <QKeySequence>
#include <QLabel>
#include <QListWidget>
#include <QMenuBar>
#include <QMessageBox>
#include <QMimeData>
#include <QProgressDialog>
#include <QSettings>
#include <QSlider>
#include <QStatusBar>
#include <QTimer>
#include <QToolBar>
#include <QVBoxLayout>
#include <cmath>

#include "app/gui/about.h"
#include "app/gui/appearance.h"
#include "app/gui/inspection_docks.h"
#include "app/gui/run_panel.h"
#include "views/alignment_view.h"
#include "views/comparison_view.h"
#include "views/loss_curves_view.h"
#include "views/teaching.h"

// The icon and other resources live in the static hedgelab_gui library: register them once.
static void init_gui_resources() {
  Q_INIT_RESOURCE(hedgelab);
}

namespace hedgelab::gui {

double resident_memory_mib() {
  QFile f("/proc/self/statm");
  if (!f.open(QIODevice::ReadOnly)) return -1.0;
  const QList<QByteArray> fields = f.readAll().split(' ');
  if (fields.size() < 2) return -1.0;
  return fields[1].toDouble() * 4096.0 / (1024.0 * 1024.0);
}

// One entry of the Sessions dock: the live run (data owned by the controller) or an opened file.
struct MainWindow::Document {
  QString title;
  std::unique_ptr<SessionDocument> file;  // null for the live run
  bool live = false;
  bool compare = false;
  const views::RunData* data(const RunController& c) const { return live ? &c.data() : &file->data(); }
  QString recipe_json(const RunController& c) const {
    return live ? c.info().recipe_json : file->recipe_json();
  }
};

MainWindow::MainWindow(const WindowOptions& options, QWidget* parent)
    : QMainWindow(parent), options_(options), controller_(std::make_unique<RunController>()) {
  init_gui_resources();
  setWindowTitle(tr("HedgeLab"));
  setWindowIcon(QIcon(":/hedgelab/icons/hedgelab.svg"));
  setAcceptDrops(true);
  setDockNestingEnabled(true);
  panel_ = new RunPanel(options.cuda_available, this);
  loss_view_ = new views::LossCurvesView(this);
  setCentralWidget(explained(loss_view_, "loss_curves"));
  build_docks();
  build_actions();

  connect(panel_, &RunPanel::start_clicked, this, [this] { start_run(); });
  connect(panel_, &RunPanel::pause_clicked, controller_.get(), &RunController::toggle_pause);
  connect(panel_, &RunPanel::stop_clicked, controller_.get(), &RunController::stop);
  connect(controller_.get(), &RunController::state_changed, this, &MainWindow::update_actions);
  connect(controller_.get(), &RunController::progress_changed, this, [this] {
    panel_->show_progress(controller_->progress(), QString::fromLatin1(to_string(controller_->state())));
  });
  connect(controller_.get(), &RunController::problem, this, &MainWindow::show_error);
  connect(controller_.get(), &RunController::notice, this,
          [this](const QString& text) { statusBar()->showMessage(text, 60000); });
  connect(controller_.get(), &RunController::run_started, this, [this](const RunStarted& info) {
    add_recent(info.session_path);
    if (documents_.empty() || !documents_.front()->live) {
      auto doc = std::make_unique<Document>();
      doc->live = true;
      documents_.insert(documents_.begin(), std::move(doc));
      if (current_ >= 0) ++current_;
    }
    documents_.front()->title = tr("live: %1").arg(QFileInfo(info.session_path).fileName());
    select_document(0);
    update_documents_list();
    update_status();
  });
  connect(controller_.get(), &RunController::probe_arrived, this, [this] {
    if (current_ >= 0 && documents_[current_]->live) update_step_slider();
  });
  connect(controller_.get(), &RunController::ended, this, [this](const RunEnded& end) {
    const QString state = end.summary.stopped_early
                              ? tr("stopped at step %1 (resumable)").arg(end.summary.steps)
                              : tr("finished: perplexity %1 (teacher %2)")
                                    .arg(end.summary.perplexity, 0, 'f', 4)
                                    .arg(end.teacher_perplexity, 0, 'f', 4);
    panel_->show_status(state);
    statusBar()->showMessage(state, 10000);
    // The run's session is closed now: list it as the file it is (it stays open for comparison and resume).
    if (!documents_.empty() && documents_.front()->live) {
      try {
        auto file = SessionDocument::open(controller_->info().session_path);
        documents_.front()->title = file->title();
        documents_.front()->file = std::move(file);
        documents_.front()->live = false;
        update_documents_list();
        if (current_ == 0) show_current();
        update_comparison();
      } catch (const std::exception& e) {
        statusBar()->showMessage(QString::fromUtf8(e.what()), 10000);
      }
    }
  });

  repaint_timer_ = new QTimer(this);
  repaint_timer_->setInterval(100);  // views redraw at most 10 times a second, and only when data moved
  connect(repaint_timer_, &QTimer::timeout, this, [this] { refresh_views(false); });
  repaint_timer_->start();
  status_timer_ = new QTimer(this);
  status_timer_->setInterval(1000);
  connect(status_timer_, &QTimer::timeout, this, &MainWindow::update_status);
  status_timer_->start();

  if (options_.restore_settings) restore_settings();
  if (!options_.sessions_folder.isEmpty()) panel_->set_sessions_folder(options_.sessions_folder);
  if (options_.teaching) set_teaching_mode(true);
  update_actions(UiRunState::Idle);
  update_status();
}

MainWindow::~MainWindow() = default;

QWidget* MainWindow::explained(QWidget* view, const QString& id) {
  auto* holder = new QWidget(this);
  auto* layout = new QVBoxLayout(holder);
  layout->setContentsMargins(0, 0, 0, 0);
  auto* text = new QLabel(views::teaching_html(id), holder);
  text->setObjectName("explanation_" + id);
  text->setWordWrap(true);
  text->setVisible(false);
  layout->addWidget(text);
  layout->addWidget(view, 1);
  explanations_.push_back(text);
  return holder;
}

void MainWindow::build_docks() {
  auto dock = [&](const QString& title, const QString& name, QWidget* w, Qt::DockWidgetArea area) {
    auto* d = new QDockWidget(title, this);
    d->setObjectName(name);  // saveState/restoreState key
    d->setWidget(w);
    addDockWidget(area, d);
    docks_.push_back(d);
    return d;
  };
  dock(tr("Run"), "dock_run", panel_, Qt::LeftDockWidgetArea);

  auto* sessions = new QWidget(this);
  auto* sl = new QVBoxLayout(sessions);
  sessions_list_ = new QListWidget(sessions);
  sessions_list_->setObjectName("sessions_list");
  sessions_list_->setToolTip(tr("Open sessions: select one to show it; tick several to compare them"));
  sl->addWidget(sessions_list_);
  dock(tr("Sessions"), "dock_sessions", sessions, Qt::LeftDockWidgetArea);
  connect(sessions_list_, &QListWidget::currentRowChanged, this, [this](int row) {
    if (row >= 0 && row != current_) select_document(row);
  });
  connect(sessions_list_, &QListWidget::itemChanged, this, [this](QListWidgetItem* item) {
    const int row = sessions_list_->row(item);
    if (row >= 0 && row < static_cast<int>(documents_.size())) {
      documents_[row]->compare = item->checkState() == Qt::Checked;
      update_comparison();
    }
  });

  alignment_view_ = new views::AlignmentView(this);
  auto* align_dock = dock(tr("Alignment"), "dock_alignment", explained(alignment_view_, "alignment"),
                          Qt::RightDockWidgetArea);
  comparison_view_ = new views::ComparisonView(this);
  auto* compare_dock = dock(tr("Comparison"), "dock_comparison", comparison_view_, Qt::BottomDockWidgetArea);

  // The step slider: which probe snapshot the alignment and inspection views show.
  auto* steps = new QWidget(this);
  auto* h = new QHBoxLayout(steps);
  h->addWidget(new QLabel(tr("Snapshot"), steps));
  step_slider_ = new QSlider(Qt::Horizontal, steps);
  step_slider_->setObjectName("step_slider");
  step_slider_->setEnabled(false);
  step_label_ = new QLabel(tr("none yet"), steps);
  step_label_->setMinimumWidth(220);
  h->addWidget(step_slider_, 1);
  h->addWidget(step_label_);
  auto* step_bar = new QToolBar(tr("Snapshots"), this);
  step_bar->setObjectName("toolbar_snapshots");
  step_bar->addWidget(steps);
  addToolBar(Qt::TopToolBarArea, step_bar);
  connect(step_slider_, &QSlider::valueChanged, this, &MainWindow::choose_step);

  inspection_ = std::make_unique<InspectionDocks>(this, *controller_);
  for (QDockWidget* d : inspection_->docks())
    docks_.push_back(d);
  tabifyDockWidget(compare_dock, align_dock);
  align_dock->raise();
}

void MainWindow::build_actions() {
  QMenu* file = menuBar()->addMenu(tr("&File"));
  file->addAction(tr("&Open session…"), QKeySequence::Open, this, [this] {
    const QString path = QFileDialog::getOpenFileName(this, tr("Open a session"), panel_->sessions_folder(),
                                                      tr("HedgeLab sessions (*.h5);;All files (*)"));
    if (!path.isEmpty()) open_session(path);
  });
  recent_menu_ = file->addMenu(tr("Open &recent"));
  resume_session_ = file->addAction(tr("&Resume selected session"), this, [this] {
    if (current_ >= 0 && documents_[current_]->file) resume_session(documents_[current_]->file->path());
  });
  file->addAction(tr("&Close selected session"), QKeySequence::Close, this, [this] {
    if (current_ < 0 || documents_[current_]->live) return;
    documents_.erase(documents_.begin() + current_);
    current_ = documents_.empty() ? -1 : 0;
    update_documents_list();
    show_current();
    update_comparison();
  });
  file->addSeparator();
  file->addAction(tr("&Quit"), QKeySequence::Quit, this, &QWidget::close);

  QMenu* run = menuBar()->addMenu(tr("&Run"));
  start_ = run->addAction(tr("&Start"), QKeySequence(Qt::CTRL | Qt::Key_R), this, [this] { start_run(); });
  pause_ = run->addAction(tr("&Pause / Resume"), QKeySequence(Qt::Key_Space), controller_.get(),
                          &RunController::toggle_pause);
  pause_->setShortcutContext(Qt::WindowShortcut);
  stop_ = run->addAction(tr("S&top (resumable)"), controller_.get(), &RunController::stop);

  view_menu_ = menuBar()->addMenu(tr("&View"));
  for (QDockWidget* d : docks_)
    view_menu_->addAction(d->toggleViewAction());
  view_menu_->addSeparator();
  teaching_ = view_menu_->addAction(tr("&Teaching mode (larger fonts, explanations)"));
  teaching_->setCheckable(true);
  connect(teaching_, &QAction::toggled, this, &MainWindow::set_teaching_mode);
  QMenu* theme = view_menu_->addMenu(tr("T&heme"));
  for (const QString& name : {QStringLiteral("system"), QStringLiteral("dark"), QStringLiteral("light")}) {
    theme->addAction(name, this, [name] {
      apply_theme(theme_from_string(name));
      QSettings().setValue("appearance/theme", name);
    });
  }

  QMenu* demo = menuBar()->addMenu(tr("&Demo"));
  demo->addAction(tr("Run the &demo (demo teacher, demo preset, teaching mode)"), this,
                  [this] { start_demo(); });
  // The 10-minute class: each stop brings its view to the front and says what to show.
  QMenu* tour = demo->addMenu(tr("&Guided tour (10 minutes)"));
  int stop_number = 1;
  for (const auto& step : views::class_plan()) {
    const QString title = [&] {
      for (const auto& t : views::teaching_texts())
        if (t.view == step.view) return t.title;
      return step.view;
    }();
    tour->addAction(tr("%1. %2 (%3 min)").arg(stop_number++).arg(title).arg(step.minutes), this,
                    [this, step] { show_tour_stop(step.view, step.focus); });
  }
  demo->addAction(tr("The &class plan…"), this, [this] {
    QMessageBox::information(this, tr("A 10-minute class"), views::class_plan_html());
  });

  QMenu* help = menuBar()->addMenu(tr("&Help"));
  help->addAction(tr("&About HedgeLab"), this, [this] { show_about(this); });
  help->addAction(tr("About &Qt"), qApp, &QApplication::aboutQt);

  auto* status = statusBar();
  status_state_ = new QLabel(status);
  status_device_ = new QLabel(status);
  status_memory_ = new QLabel(status);
  status->addPermanentWidget(status_state_);
  status->addPermanentWidget(status_device_);
  status->addPermanentWidget(status_memory_);
  rebuild_recent_menu();
}

void MainWindow::update_actions(UiRunState state) {
  const bool running = state == UiRunState::Running, paused = state == UiRunState::Paused;
  const bool can_start = !controller_->active();
  start_->setEnabled(can_start);
  pause_->setEnabled(running || paused);
  stop_->setEnabled(controller_->active() && state != UiRunState::Stopping);
  resume_session_->setEnabled(can_start);
  panel_->set_run_controls(can_start, running, paused, stop_->isEnabled());
  panel_->show_progress(controller_->progress(), QString::fromLatin1(to_string(state)));
  if (state == UiRunState::Loading) panel_->show_status(controller_->last_message());
  update_status();
}

void MainWindow::update_status() {
  status_state_->setText(tr("run: %1").arg(QString::fromLatin1(to_string(controller_->state()))));
  const QString device = controller_->info().device.isEmpty()
                             ? (panel_->recipe() ? QString::fromStdString(panel_->recipe()->device) : "cpu")
                             : controller_->info().device;
  status_device_->setText(tr("device: %1").arg(device));
  const double mib = resident_memory_mib();
  status_memory_->setText(mib >= 0 ? tr("memory: %1 MiB").arg(mib, 0, 'f', 0) : QString());
}

bool MainWindow::start_run(qint64 stop_at_step) {
  if (controller_->active()) return false;
  const auto recipe = panel_->recipe();
  if (!recipe) {
    show_error(tr("The recipe is not valid"), panel_->error());
    return false;
  }
  launch::RunRequest request;
  request.recipe = *recipe;
  request.session = launch::default_session_path(recipe->name, panel_->sessions_folder().toStdString());
  panel_->save_settings();
  controller_->start(std::move(request), stop_at_step);
  return true;
}

void MainWindow::start_demo(qint64 stop_at_step) {
  panel_->set_preset("demo");
  panel_->set_teacher({});
  panel_->set_corpus({});
  set_teaching_mode(true);
  start_run(stop_at_step);
}

bool MainWindow::resume_session(const QString& path, QString* error) {
  if (controller_->active()) {
    const QString e = tr("A run is in progress; stop it before resuming another.");
    if (error)
      *error = e;
    else
      show_error(tr("Resume"), e);
    return false;
  }
  try {
    launch::RunRequest request;
    request.recipe = launch::recipe_of_session(path.toStdString());
    request.resume_from = path.toStdString();
    controller_->start(std::move(request));
    return true;
  } catch (const std::exception& e) {
    if (error)
      *error = QString::fromUtf8(e.what());
    else
      show_error(tr("Resume"), QString::fromUtf8(e.what()));
    return false;
  }
}

bool MainWindow::open_session(const QString& path, QString* error) {
  try {
    QProgressDialog progress(tr("Reading %1…").arg(QFileInfo(path).fileName()), QString(), 0, 100, this);
    progress.setWindowModality(Qt::WindowModal);
    progress.setMinimumDuration(400);
    auto file = SessionDocument::open(path, [&progress](int done, int total) {
      progress.setMaximum(std::max(total, 1));
      progress.setValue(done);
    });
    auto doc = std::make_unique<Document>();
    doc->title = file->title();
    doc->file = std::move(file);
    documents_.push_back(std::move(doc));
    add_recent(path);
    update_documents_list();
    select_document(static_cast<int>(documents_.size()) - 1);
    statusBar()->showMessage(
        tr("%1: %2").arg(documents_.back()->title, documents_.back()->file->state_text()), 10000);
    return true;
  } catch (const std::exception& e) {
    if (error)
      *error = QString::fromUtf8(e.what());
    else
      show_error(tr("Cannot open the session"), QString::fromUtf8(e.what()));
    return false;
  }
}

int MainWindow::document_count() const {
  return static_cast<int>(documents_.size());
}

void MainWindow::select_document(int index) {
  if (index < 0 || index >= static_cast<int>(documents_.size())) return;
  current_ = index;
  if (sessions_list_->currentRow() != index) sessions_list_->setCurrentRow(index);
  follow_newest_ = true;
  show_current();
}

const views::RunData* MainWindow::current_data() const {
  if (current_ < 0 || current_ >= static_cast<int>(documents_.size())) return nullptr;
  return documents_[current_]->data(*controller_);
}

void MainWindow::show_current() {
  const views::RunData* data = current_data();
  loss_view_->set_data(data);
  alignment_view_->set_data(data);
  const bool file = current_ >= 0 && documents_[current_]->file;
  if (file && inspection_ && !controller_->active())
    inspection_->set_knob_values(documents_[current_]->file->knobs());
  resume_session_->setEnabled(!controller_->active() && file && documents_[current_]->file->resumable());
  update_step_slider();
  refresh_views(true);
}

void MainWindow::update_documents_list() {
  QSignalBlocker block(sessions_list_);
  sessions_list_->clear();
  for (const auto& d : documents_) {
    auto* item = new QListWidgetItem(d->title, sessions_list_);
    item->setFlags(item->flags() | Qt::ItemIsUserCheckable);
    item->setCheckState(d->compare ? Qt::Checked : Qt::Unchecked);
    item->setToolTip(d->file ? d->file->path() + "\n" + d->file->state_text()
                             : controller_->info().session_path);
  }
  sessions_list_->setCurrentRow(current_);
}

void MainWindow::update_comparison() {
  std::vector<views::ComparedRun> runs;
  for (const auto& d : documents_)
    if (d->compare) runs.push_back({d->title, d->data(*controller_), d->recipe_json(*controller_)});
  comparison_view_->set_runs(std::move(runs));
}

void MainWindow::update_step_slider() {
  const views::RunData* data = current_data();
  const int n = data ? static_cast<int>(data->snapshots().size()) : 0;
  QSignalBlocker block(step_slider_);
  step_slider_->setEnabled(n > 0);
  step_slider_->setRange(0, std::max(0, n - 1));
  if (follow_newest_) step_slider_->setValue(std::max(0, n - 1));
  choose_step(n > 0 ? step_slider_->value() : -1);
}

void MainWindow::choose_step(int index) {
  const views::RunData* data = current_data();
  const int n = data ? static_cast<int>(data->snapshots().size()) : 0;
  if (index < 0 || index >= n) {
    step_label_->setText(tr("no snapshot yet"));
    loss_view_->set_marker(NAN);
    alignment_view_->set_snapshot_index(-1);
    if (inspection_) inspection_->set_snapshot(nullptr);
    return;
  }
  follow_newest_ = index == n - 1;
  const views::SnapshotEntry& e = data->snapshots()[index];
  step_label_->setText(tr("%1 step %2 (%3 of %4)%5")
                           .arg(QString::fromStdString(e.stage))
                           .arg(e.step)
                           .arg(index + 1)
                           .arg(n)
                           .arg(follow_newest_ ? tr(", newest") : QString()));
  loss_view_->set_marker(e.x);
  alignment_view_->set_snapshot_index(index);
  if (inspection_) inspection_->set_snapshot(e.snapshot);
}

void MainWindow::refresh_views(bool force) {
  loss_view_->refresh(force);
  alignment_view_->refresh(force);
  comparison_view_->refresh(force);
  if (inspection_) inspection_->refresh(force);
}

QStringList MainWindow::view_names() const {
  QStringList names = {"window", "run", "loss", "alignment", "comparison"};
  if (inspection_) names << inspection_->view_names();
  return names;
}

QWidget* MainWindow::view_widget(const QString& name) const {
  if (name == "window") return const_cast<MainWindow*>(this);
  if (name == "run") return panel_;
  if (name == "loss") return loss_view_->parentWidget();
  if (name == "alignment") return alignment_view_->parentWidget();
  if (name == "comparison") return comparison_view_;
  return inspection_ ? inspection_->view_widget(name) : nullptr;
}

void MainWindow::set_teaching_mode(bool on) {
  if (teaching_ && teaching_->isChecked() != on) {
    teaching_->setChecked(on);  // re-enters through toggled
    return;
  }
  apply_font_scale(on ? 1.35 : 1.0);
  for (QLabel* text : explanations_)
    text->setVisible(on);
  if (inspection_) inspection_->set_teaching(on);
}

void MainWindow::show_tour_stop(const QString& view, const QString& focus) {
  set_teaching_mode(true);
  QDockWidget* dock = nullptr;
  if (view == "alignment") dock = findChild<QDockWidget*>("dock_alignment");
  if (inspection_ && !dock) dock = inspection_->dock(view);
  if (dock) {
    dock->show();
    dock->raise();
  }
  statusBar()->showMessage(focus, 60000);
}

void MainWindow::show_error(const QString& title, const QString& message) {
  statusBar()->showMessage(title + ": " + message.section('\n', 0, 0), 15000);
  if (closing_ || QApplication::platformName() == "offscreen") return;  // no one to click a dialog away
  QMessageBox::warning(this, title, message);
}

void MainWindow::add_recent(const QString& path) {
  QSettings s;
  QStringList recent = s.value("recent_sessions").toStringList();
  const QString abs = QFileInfo(path).absoluteFilePath();
  recent.removeAll(abs);
  recent.prepend(abs);
  while (recent.size() > 10)
    recent.removeLast();
  s.setValue("recent_sessions", recent);
  rebuild_recent_menu();
}

void MainWindow::rebuild_recent_menu() {
  recent_menu_->clear();
  const QStringList recent = QSettings().value("recent_sessions").toStringList();
  for (const QString& path : recent)
    recent_menu_->addAction(QFileInfo(path).fileName(), this, [this, path] { open_session(path); })
        ->setToolTip(path);
  recent_menu_->setEnabled(!recent.isEmpty());
}

void MainWindow::save_settings() {
  QSettings s;
  s.setValue("window/geometry", saveGeometry());
  s.setValue("window/state", saveState());
  s.setValue("appearance/teaching", teaching_->isChecked());
  panel_->save_settings();
}

void MainWindow::restore_settings() {
  QSettings s;
  restoreGeometry(s.value("window/geometry").toByteArray());
  restoreState(s.value("window/state").toByteArray());
  apply_theme(theme_from_string(s.value("appearance/theme", "system").toString()));
  panel_->load_settings();
}

void MainWindow::closeEvent(QCloseEvent* event) {
  if (controller_->active()) {
    const bool offscreen = QApplication::platformName() == "offscreen";
    if (!offscreen &&
        QMessageBox::question(this, tr("A run is in progress"),
                              tr("Stop the run (with a resumable checkpoint) and close?"),
                              QMessageBox::Yes | QMessageBox::No, QMessageBox::No) != QMessageBox::Yes) {
      event->ignore();
      return;
    }
    closing_ = true;
    statusBar()->showMessage(tr("Stopping the run…"));
    if (!controller_->stop_and_wait(120000)) {
      closing_ = false;
      show_error(tr("The run did not stop"), tr("The run did not stop within two minutes; try again."));
      event->ignore();
      return;
    }
  }
  if (options_.restore_settings) save_settings();
  event->accept();
}

void MainWindow::dragEnterEvent(QDragEnterEvent* event) {
  if (!event->mimeData()->hasUrls()) return;
  for (const QUrl& url : event->mimeData()->urls())
    if (url.isLocalFile() && url.toLocalFile().endsWith(".h5")) {
      event->acceptProposedAction();
      return;
    }
}

void MainWindow::dropEvent(QDropEvent* event) {
  for (const QUrl& url : event->mimeData()->urls())
    if (url.isLocalFile() && url.toLocalFile().endsWith(".h5")) open_session(url.toLocalFile());
  event->acceptProposedAction();
}

}  // namespace hedgelab::gui
