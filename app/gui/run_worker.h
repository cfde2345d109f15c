// The run's own thread. A RunWorker lives in a QThread and owns the SessionRun (teacher, corpus, DistillRun,
// session writer); the UI thread never touches it. Requests arrive as queued slot calls; while the run
// steps, the worker delivers them between steps (pause takes effect within one step). Reports leave as
// queued signals carrying plain values (run_messages.h). Nothing is shared behind a lock, and no connection
// from the worker to the UI blocks.
#pragma once

#include <QObject>
#include <QString>
#include <memory>

#include "app/gui/run_messages.h"
#include "app/launch/session_run.h"

namespace hedgelab::gui {

class RunWorker : public QObject {
  Q_OBJECT

 public:
  RunWorker();
  ~RunWorker() override;

 public Q_SLOTS:
  // Loads the teacher and corpus, creates the session and runs until finished, paused or stopped.
  // `stop_at_step` > 0 stops (with a checkpoint) after that many steps of both stages.
  void start(hedgelab::launch::RunRequest request, qint64 stop_at_step = 0);
  void pause();
  void resume();
  // Stops with a resumable checkpoint; from a paused run too.
  void stop();
  void apply_knobs(hedgelab::snapshot::KnobEdit edit);
  // Stops a live run and closes its session; the worker can start another afterwards.
  void shutdown();

 Q_SIGNALS:
  void loading(QString what);
  void started(hedgelab::gui::RunStarted info);
  void state_changed(hedgelab::snapshot::RunState from, hedgelab::snapshot::RunState to, QString reason);
  void stage_started(QString stage, qint64 total_steps);
  void step_reported(QString stage, hedgelab::snapshot::StepReport report);
  void eval_reported(QString stage, hedgelab::snapshot::EvalReport report);
  void probe_reported(hedgelab::gui::SnapshotPtr snapshot);
  void checkpoint_saved(QString why, QString dir);
  void knobs_applied(QString stage, qint64 step, hedgelab::snapshot::KnobEdit edit);
  // An edit the run refused (a value out of range): one line naming the field; nothing changed.
  void knobs_refused(QString message);
  void notice(QString stage, QString text);  // run::RunObserver::on_notice
  void ended(hedgelab::gui::RunEnded end);
  // An error that ended the run (bad teacher, bad recipe, disk full, a model error): one line.
  void failed(QString message);

 private:
  class Reports;
  void step_until_stopped();
  void deliver_requests();

  std::unique_ptr<Reports> reports_;
  std::unique_ptr<launch::SessionRun> session_;
  qint64 stop_at_step_ = 0;
  bool stepping_ = false;
};

}  // namespace hedgelab::gui
