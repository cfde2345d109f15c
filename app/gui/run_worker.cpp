#include "app/gui/run_worker.h"

#include <spdlog/spdlog.h>

#include <QCoreApplication>
#include <QEvent>

#include "core/common/threads.h"

namespace hedgelab::gui {

// The run's observer: turns every report into a queued signal, and between steps lets the worker's queued
// requests (pause, stop, knobs) in.
class RunWorker::Reports : public run::RunObserver {
 public:
  explicit Reports(RunWorker* worker) : w_(worker) {}

  void on_state(run::RunState from, run::RunState to, const std::string& reason) override {
    Q_EMIT w_->state_changed(from, to, QString::fromStdString(reason));
  }
  void on_stage_start(const std::string& stage, int64_t total_steps) override {
    Q_EMIT w_->stage_started(QString::fromStdString(stage), total_steps);
  }
  void on_step(const std::string& stage, const run::StepReport& report) override {
    Q_EMIT w_->step_reported(QString::fromStdString(stage), report);
    w_->deliver_requests();
  }
  void on_eval(const std::string& stage, const run::EvalReport& report) override {
    Q_EMIT w_->eval_reported(QString::fromStdString(stage), report);
  }
  void on_probe(const snapshot::ProbeSnapshot& snapshot) override {
    Q_EMIT w_->probe_reported(std::make_shared<const snapshot::ProbeSnapshot>(snapshot));
  }
  void on_checkpoint(const run::Checkpoint&, const std::string& why) override { pending_why_ = why; }
  void on_knobs(const std::string& stage, int64_t step, const snapshot::KnobEdit& applied) override {
    Q_EMIT w_->knobs_applied(QString::fromStdString(stage), step, applied);
  }
  void on_notice(const std::string& stage, const std::string& text) override {
    Q_EMIT w_->notice(QString::fromStdString(stage), QString::fromStdString(text));
  }

  // The recorder writes the checkpoint after this observer heard of it: report it once it is on disk.
  void report_checkpoint() {
    if (pending_why_.empty() || !w_->session_) return;
    Q_EMIT w_->checkpoint_saved(
        QString::fromStdString(pending_why_),
        QString::fromStdString(w_->session_->recorder().last_checkpoint_dir().string()));
    pending_why_.clear();
  }

 private:
  RunWorker* w_;
  std::string pending_why_;
};

RunWorker::RunWorker() : reports_(std::make_unique<Reports>(this)) {}

RunWorker::~RunWorker() = default;

void RunWorker::deliver_requests() {
  reports_->report_checkpoint();
  // Queued pause/stop/knob calls wait in this thread's event queue while run() steps: hand them over now.
  QCoreApplication::sendPostedEvents(this, QEvent::MetaCall);
}

void RunWorker::start(launch::RunRequest request, qint64 stop_at_step) {
  if (stepping_ || session_) {
    Q_EMIT failed(tr("A run is already open in this window; stop it before starting another."));
    return;
  }
  stop_at_step_ = stop_at_step;
  try {
    Q_EMIT loading(tr("Loading the teacher, tokenizer and corpus…"));
    const int threads = apply_recipe_threads(static_cast<int>(request.recipe.threads));
    spdlog::info("{} LibTorch threads", threads);
    const bool resumed = !request.resume_from.empty();
    const QString resumed_from = QString::fromStdString(request.resume_from.string());
    session_ = std::make_unique<launch::SessionRun>(std::move(request), reports_.get());
    RunStarted info;
    info.session_path = QString::fromStdString(session_->session_path().string());
    info.recipe_json = QString::fromStdString(session_->recipe().to_json().dump(2));
    info.device = QString::fromStdString(session_->recipe().device);
    info.stage1_steps = session_->recipe().stage1_steps();
    info.stage2_steps = session_->recipe().stage2_steps();
    info.steps_done = session_->run().steps_done();
    info.resumed = resumed;
    info.resumed_from = resumed_from;
    info.knobs = session_->run().knob_values();
    Q_EMIT started(info);
  } catch (const std::exception& e) {
    session_.reset();
    Q_EMIT failed(QString::fromUtf8(e.what()));
    return;
  }
  // Requests that arrived while loading (a stop ends the run right here, and may already have closed it).
  QCoreApplication::sendPostedEvents(this, QEvent::MetaCall);
  step_until_stopped();
}

void RunWorker::step_until_stopped() {
  if (!session_ || stepping_) return;
  stepping_ = true;
  run::RunState state = run::RunState::Failed;
  try {
    state = session_->step(stop_at_step_);
    reports_->report_checkpoint();
  } catch (const std::exception& e) {
    stepping_ = false;
    reports_->report_checkpoint();
    const QString message = QString::fromUtf8(e.what());
    // The session keeps what was committed (the recorder logged the error event); close it.
    try {
      session_->close();
    } catch (const std::exception& close_error) {
      spdlog::warn("closing the session after an error: {}", close_error.what());
    }
    session_.reset();
    Q_EMIT failed(message);
    return;
  }
  stepping_ = false;
  if (state == run::RunState::Finished) {
    const auto& r = session_->run();
    RunEnded end;
    end.summary = r.summary();
    end.complete = r.stage() == "done";
    end.teacher_perplexity = r.teacher_perplexity();
    end.checkpoint_dir = QString::fromStdString(session_->recorder().last_checkpoint_dir().string());
    session_->close();
    session_.reset();
    Q_EMIT ended(end);
  }
  // Paused: the session stays open; resume() or stop() continue.
}

void RunWorker::pause() {
  if (session_ && stepping_) session_->run().pause();
}

void RunWorker::resume() {
  if (!session_ || stepping_ || session_->run().state() != run::RunState::Paused) return;
  step_until_stopped();
}

void RunWorker::stop() {
  if (!session_) return;  // nothing open (a stale request after the run ended)
  session_->run().stop();
  // A paused run is not stepping: step once more so it takes the stop (checkpoint, state Finished).
  if (!stepping_) step_until_stopped();
}

void RunWorker::apply_knobs(snapshot::KnobEdit edit) {
  if (!session_) return;
  try {
    session_->run().request_knobs(edit);
  } catch (const std::exception& e) {
    Q_EMIT knobs_refused(QString::fromUtf8(e.what()));
  }
}

void RunWorker::shutdown() {
  if (session_) stop();
}

}  // namespace hedgelab::gui
