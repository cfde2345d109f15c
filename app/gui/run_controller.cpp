#include "app/gui/run_controller.h"

#include <QDeadlineTimer>
#include <QEventLoop>
#include <QTimer>

#include "app/gui/run_worker.h"

namespace hedgelab::gui {

const char* to_string(UiRunState s) {
  switch (s) {
    case UiRunState::Idle:
      return "idle";
    case UiRunState::Loading:
      return "loading";
    case UiRunState::Running:
      return "running";
    case UiRunState::Pausing:
      return "pausing";
    case UiRunState::Paused:
      return "paused";
    case UiRunState::Stopping:
      return "stopping";
    case UiRunState::Stopped:
      return "stopped";
    case UiRunState::Finished:
      return "finished";
    case UiRunState::Failed:
      return "failed";
  }
  return "?";
}

RunController::RunController(QObject* parent) : QObject(parent) {
  register_run_message_types();
  qRegisterMetaType<launch::RunRequest>();
  qRegisterMetaType<UiRunState>();
  thread_.setObjectName("hedgelab-run");
  worker_ = new RunWorker;
  worker_->moveToThread(&thread_);
  connect(&thread_, &QThread::finished, worker_, &QObject::deleteLater);

  // Requests: queued into the worker's thread.
  connect(this, &RunController::request_start, worker_, &RunWorker::start, Qt::QueuedConnection);
  connect(this, &RunController::request_pause, worker_, &RunWorker::pause, Qt::QueuedConnection);
  connect(this, &RunController::request_resume, worker_, &RunWorker::resume, Qt::QueuedConnection);
  connect(this, &RunController::request_stop, worker_, &RunWorker::stop, Qt::QueuedConnection);
  connect(this, &RunController::request_knobs, worker_, &RunWorker::apply_knobs, Qt::QueuedConnection);

  // Reports: queued into this (UI) thread; each only appends and bumps a revision.
  connect(worker_, &RunWorker::loading, this, [this](const QString& what) {
    last_message_ = what;
    set_state(UiRunState::Loading);
  });
  connect(worker_, &RunWorker::started, this, [this](const RunStarted& info) {
    info_ = info;
    data_.title = info.session_path;
    data_.set_stage_steps(info.stage1_steps, info.stage2_steps);
    progress_ = RunProgress();
    progress_.total_steps = info.stage1_steps + info.stage2_steps;
    progress_.steps_done = info.steps_done;
    since_last_step_.invalidate();
    Q_EMIT run_started(info);
    Q_EMIT progress_changed();
  });
  connect(worker_, &RunWorker::state_changed, this,
          [this](snapshot::RunState, snapshot::RunState to, const QString& reason) {
            last_message_ = reason;
            switch (to) {
              case snapshot::RunState::Running:
                set_state(UiRunState::Running);
                since_last_step_.invalidate();
                break;
              case snapshot::RunState::Paused:
                set_state(UiRunState::Paused);
                if (reason != "pause requested")
                  Q_EMIT problem(tr("The run paused"),
                                 tr("%1\n\nThe last good state is checkpointed; change the recipe knobs or "
                                    "resume.")
                                     .arg(reason));
                break;
              case snapshot::RunState::Failed:
                break;  // failed() carries the message
              default:
                break;
            }
          });
  connect(worker_, &RunWorker::stage_started, this, [this](const QString& stage, qint64 total) {
    progress_.stage = stage;
    progress_.stage_steps = total;
    Q_EMIT progress_changed();
  });
  connect(worker_, &RunWorker::step_reported, this, &RunController::on_step);
  connect(worker_, &RunWorker::eval_reported, this,
          [this](const QString& stage, const snapshot::EvalReport& e) {
            data_.add_eval(stage.toStdString(), e);
          });
  connect(worker_, &RunWorker::probe_reported, this, [this](const SnapshotPtr& s) {
    views::SnapshotEntry e;
    e.snapshot = s;
    e.stage = s->stage;
    e.step = s->step;
    e.x = data_.global_step(s->stage, s->step);
    data_.add_snapshot(std::move(e));
    Q_EMIT probe_arrived(s);
  });
  connect(worker_, &RunWorker::checkpoint_saved, this, &RunController::checkpoint_saved);
  connect(worker_, &RunWorker::knobs_applied, this, &RunController::knobs_applied);
  connect(worker_, &RunWorker::knobs_refused, this,
          [this](const QString& message) { Q_EMIT problem(tr("The knob edit was refused"), message); });
  connect(worker_, &RunWorker::notice, this,
          [this](const QString& stage, const QString& text) { Q_EMIT notice(stage + ": " + text); });
  connect(worker_, &RunWorker::ended, this, [this](const RunEnded& end) {
    if (end.complete) {
      snapshot::RunSummary teacher;
      teacher.run = "teacher";
      teacher.perplexity = end.teacher_perplexity;
      teacher.ratio_to_teacher = 1.0;
      data_.set_summary({teacher, end.summary});
    }
    set_state(end.summary.stopped_early ? UiRunState::Stopped : UiRunState::Finished);
    Q_EMIT ended(end);
  });
  connect(worker_, &RunWorker::failed, this, [this](const QString& message) {
    last_message_ = message;
    const bool was_loading = state_ == UiRunState::Loading || state_ == UiRunState::Idle;
    set_state(UiRunState::Failed);
    Q_EMIT problem(was_loading ? tr("The run could not start") : tr("The run failed"), message);
  });
  thread_.start();
}

RunController::~RunController() {
  // The window asked and waited already (stop_and_wait); this is the last resort: stop, then let the
  // thread finish its step and end.
  Q_EMIT request_stop();
  thread_.quit();
  thread_.wait();
}

bool RunController::active() const {
  switch (state_) {
    case UiRunState::Loading:
    case UiRunState::Running:
    case UiRunState::Pausing:
    case UiRunState::Paused:
    case UiRunState::Stopping:
      return true;
    default:
      return false;
  }
}

void RunController::set_state(UiRunState state) {
  if (state == state_) return;
  state_ = state;
  Q_EMIT state_changed(state);
}

void RunController::start(launch::RunRequest request, qint64 stop_at_step) {
  if (active()) return;
  data_.clear();
  progress_ = RunProgress();
  info_ = RunStarted();
  last_message_.clear();
  set_state(UiRunState::Loading);
  Q_EMIT request_start(std::move(request), stop_at_step);
}

void RunController::pause() {
  if (state_ != UiRunState::Running) return;
  set_state(UiRunState::Pausing);
  Q_EMIT request_pause();
}

void RunController::resume() {
  if (state_ != UiRunState::Paused) return;
  set_state(UiRunState::Running);
  Q_EMIT request_resume();
}

void RunController::toggle_pause() {
  if (state_ == UiRunState::Running)
    pause();
  else if (state_ == UiRunState::Paused)
    resume();
}

void RunController::stop() {
  if (!active() || state_ == UiRunState::Stopping) return;
  set_state(UiRunState::Stopping);
  Q_EMIT request_stop();
}

void RunController::apply_knobs(const snapshot::KnobEdit& edit) {
  if (active()) Q_EMIT request_knobs(edit);
}

bool RunController::stop_and_wait(int timeout_ms) {
  if (!active()) return true;
  stop();
  QEventLoop loop;
  QTimer timeout;
  timeout.setSingleShot(true);
  connect(&timeout, &QTimer::timeout, &loop, &QEventLoop::quit);
  connect(this, &RunController::state_changed, &loop, [this, &loop] {
    if (!active()) loop.quit();
  });
  timeout.start(timeout_ms);
  if (active()) loop.exec();
  return !active();
}

void RunController::on_step(const QString& stage, const snapshot::StepReport& r) {
  const std::string s = stage.toStdString();
  data_.add_step(s, r);
  progress_.stage = stage;
  progress_.step = r.step;
  progress_.stage_steps = r.total_steps;
  progress_.steps_done = static_cast<qint64>(data_.global_step(s, r.step));
  progress_.tokens_per_second = r.tokens_per_second;
  progress_.loss = r.total;
  // Wall time per step as the UI sees it (probes and evaluations included), smoothed.
  if (since_last_step_.isValid()) {
    const double dt = since_last_step_.nsecsElapsed() * 1e-9;
    progress_.seconds_per_step =
        progress_.seconds_per_step > 0 ? 0.9 * progress_.seconds_per_step + 0.1 * dt : dt;
  }
  since_last_step_.start();
  if (progress_.seconds_per_step > 0)
    progress_.eta_seconds = progress_.seconds_per_step * (progress_.total_steps - progress_.steps_done);
  Q_EMIT progress_changed();
}

}  // namespace hedgelab::gui
