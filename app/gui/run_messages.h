// The value types the run worker sends to the UI thread through queued signals, registered with Qt's
// meta-type system. Plain values only: the UI never sees a tensor or the run object.
#pragma once

#include <QMetaType>
#include <QString>
#include <memory>

#include "core/snapshot/probe_snapshot.h"
#include "core/snapshot/run_reports.h"
#include "views/snapshot_metatypes.h"

namespace hedgelab::gui {

using SnapshotPtr = std::shared_ptr<const snapshot::ProbeSnapshot>;

// What the worker says once a run's session exists: where it is and how long each stage is.
struct RunStarted {
  QString session_path;
  QString recipe_json;  // the recipe as JSON (the session's provenance holds the same)
  QString device;
  qint64 stage1_steps = 0;
  qint64 stage2_steps = 0;
  qint64 steps_done = 0;  // > 0 when resumed
  bool resumed = false;
  QString resumed_from;
  snapshot::KnobEdit knobs;  // the knobs' values at the start (every field set)
};

// The end of a run: finished or stopped early (summary.stopped_early), with the teacher's perplexity when
// the recipe completed.
struct RunEnded {
  snapshot::RunSummary summary;
  double teacher_perplexity = 0.0;
  bool complete = false;
  QString checkpoint_dir;
};

void register_run_message_types();

}  // namespace hedgelab::gui

Q_DECLARE_METATYPE(hedgelab::gui::RunStarted)
Q_DECLARE_METATYPE(hedgelab::gui::RunEnded)
