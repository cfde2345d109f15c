// The inspection views (docs/method.md §7) as dock widgets of the main window: attention maps, the kernel
// approximation, the Mamba internals and the ImGui inspector, each with its teaching explanation beside it.
// They show the snapshot the step slider picks; the inspector's knob edits go to the run controller.
#pragma once

#include <QStringList>
#include <memory>
#include <vector>

#include "app/gui/run_messages.h"

class QDockWidget;
class QMainWindow;
class QWidget;

namespace hedgelab::gui {

class RunController;

class InspectionDocks {
 public:
  InspectionDocks(QMainWindow* window, RunController& controller);
  ~InspectionDocks();

  const std::vector<QDockWidget*>& docks() const { return docks_; }
  void set_snapshot(SnapshotPtr snapshot);
  // The knob values the inspector shows when no run is live (a saved session's).
  void set_knob_values(const snapshot::KnobEdit& values);
  void refresh(bool force);
  void set_teaching(bool on);
  QStringList view_names() const;
  QWidget* view_widget(const QString& name) const;
  QDockWidget* dock(const QString& name) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::vector<QDockWidget*> docks_;
};

}  // namespace hedgelab::gui
