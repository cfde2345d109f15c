// Qt meta-type declarations of the snapshot value types (queued signals, QVariant), in one place so that no
// two headers declare the same type.
#pragma once

#include <QMetaType>
#include <memory>

#include "core/snapshot/probe_snapshot.h"
#include "core/snapshot/run_reports.h"

Q_DECLARE_METATYPE(hedgelab::snapshot::StepReport)
Q_DECLARE_METATYPE(hedgelab::snapshot::EvalReport)
Q_DECLARE_METATYPE(hedgelab::snapshot::RunState)
Q_DECLARE_METATYPE(hedgelab::snapshot::KnobEdit)
Q_DECLARE_METATYPE(std::shared_ptr<const hedgelab::snapshot::ProbeSnapshot>)
