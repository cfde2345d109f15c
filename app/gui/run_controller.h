// The UI thread's handle on a run: starts the worker's thread, sends it requests as queued calls, and turns
// its reports into the live RunData the views draw (appending only; views redraw on their timer) and a small
// UI state machine for the window's actions. Never blocks on the worker.
#pragma once

#include <QElapsedTimer>
#include <QObject>
#include <QThread>

#include "app/gui/run_messages.h"
#include "app/launch/session_run.h"
#include "views/run_data.h"

namespace hedgelab::gui {

class RunWorker;

// What the window shows and which actions are enabled.
enum class UiRunState { Idle, Loading, Running, Pausing, Paused, Stopping, Stopped, Finished, Failed };
const char* to_string(UiRunState state);

// Progress for the progress area, derived from the step reports as they arrive.
struct RunProgress {
  QString stage;
  qint64 step = 0, stage_steps = 0;        // in the stage
  qint64 steps_done = 0, total_steps = 0;  // both stages
  double tokens_per_second = 0.0;
  double seconds_per_step = 0.0;  // wall time between reports, smoothed (probes included)
  double eta_seconds = -1.0;      // −1 = not known yet
  double loss = 0.0;
};

class RunController : public QObject {
  Q_OBJECT

 public:
  explicit RunController(QObject* parent = nullptr);
  ~RunController() override;

  UiRunState state() const { return state_; }
  bool active() const;  // loading, running, pausing, paused or stopping
  const views::RunData& data() const { return data_; }
  views::RunData& data() { return data_; }
  const RunProgress& progress() const { return progress_; }
  const RunStarted& info() const { return info_; }
  QString last_message() const { return last_message_; }

  void start(launch::RunRequest request, qint64 stop_at_step = 0);
  void pause();
  void resume();
  void toggle_pause();
  void stop();
  void apply_knobs(const snapshot::KnobEdit& edit);
  // For closing the window: asks the run to stop and waits (the event loop keeps turning, so the window
  // repaints) until the worker has ended it or `timeout_ms` passed. True when the run ended.
  bool stop_and_wait(int timeout_ms);

 Q_SIGNALS:
  void state_changed(hedgelab::gui::UiRunState state);
  void progress_changed();
  void run_started(hedgelab::gui::RunStarted info);
  void probe_arrived(hedgelab::gui::SnapshotPtr snapshot);
  void knobs_applied(QString stage, qint64 step, hedgelab::snapshot::KnobEdit edit);
  // The run paused on its own (non-finite loss, out of memory) or failed: show the message.
  void problem(QString title, QString message);
  // Worth knowing, not a problem (a fused kernel not taken on CUDA): for the status bar, no dialog.
  void notice(QString text);
  void ended(hedgelab::gui::RunEnded end);
  void checkpoint_saved(QString why, QString dir);

  // To the worker (queued).
  void request_start(hedgelab::launch::RunRequest request, qint64 stop_at_step);
  void request_pause();
  void request_resume();
  void request_stop();
  void request_knobs(hedgelab::snapshot::KnobEdit edit);

 private:
  void set_state(UiRunState state);
  void on_step(const QString& stage, const snapshot::StepReport& report);

  QThread thread_;
  RunWorker* worker_ = nullptr;  // lives in thread_
  UiRunState state_ = UiRunState::Idle;
  views::RunData data_;
  RunProgress progress_;
  RunStarted info_;
  QString last_message_;
  QElapsedTimer since_last_step_;
};

}  // namespace hedgelab::gui

Q_DECLARE_METATYPE(hedgelab::launch::RunRequest)
Q_DECLARE_METATYPE(hedgelab::gui::UiRunState)
