#include "app/gui/run_messages.h"

namespace hedgelab::gui {

void register_run_message_types() {
  qRegisterMetaType<snapshot::StepReport>();
  qRegisterMetaType<snapshot::EvalReport>();
  qRegisterMetaType<snapshot::RunState>();
  qRegisterMetaType<snapshot::KnobEdit>();
  qRegisterMetaType<SnapshotPtr>();
  qRegisterMetaType<RunStarted>();
  qRegisterMetaType<RunEnded>();
}

}  // namespace hedgelab::gui
