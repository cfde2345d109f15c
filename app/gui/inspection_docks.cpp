#include "app/gui/inspection_docks.h"

#include <QDockWidget>
#include <QLabel>
#include <QMainWindow>
#include <QSplitter>
#include <QVBoxLayout>
#include <functional>

#include "app/gui/run_controller.h"
#include "views/attention_view.h"
#include "views/inspector_view.h"
#include "views/kernel_view.h"
#include "views/mamba_view.h"
#include "views/teaching.h"

namespace hedgelab::gui {

// One inspection view in its dock, with the teaching explanation above it (shown in teaching mode).
struct InspectionEntry {
  QString name;
  QDockWidget* dock = nullptr;
  QWidget* view = nullptr;
  QLabel* explanation = nullptr;
  std::function<void(SnapshotPtr)> set_snapshot;
  std::function<void(bool)> refresh;
};

struct InspectionDocks::Impl {
  QMainWindow* window = nullptr;
  RunController* controller = nullptr;
  std::vector<InspectionEntry> entries;
  views::InspectorView* inspector = nullptr;

  InspectionEntry& add(const QString& name, const QString& title, QWidget* view, const QString& explanation,
                       Qt::DockWidgetArea area) {
    auto* holder = new QWidget(window);
    auto* layout = new QVBoxLayout(holder);
    layout->setContentsMargins(2, 2, 2, 2);
    auto* text = new QLabel(explanation, holder);
    text->setWordWrap(true);
    text->setObjectName("explanation_" + name);
    text->setVisible(false);
    text->setTextFormat(Qt::RichText);
    layout->addWidget(text);
    layout->addWidget(view, 1);
    auto* dock = new QDockWidget(title, window);
    dock->setObjectName("dock_" + name);
    dock->setWidget(holder);
    window->addDockWidget(area, dock);
    entries.push_back({name, dock, view, text, {}, {}});
    return entries.back();
  }
};

InspectionDocks::InspectionDocks(QMainWindow* window, RunController& controller) : impl_(std::make_unique<Impl>()) {
  impl_->window = window;
  impl_->controller = &controller;
  views::register_inspector_metatypes();
  auto explained = [](const QString& id) { return views::teaching_html(id); };

  auto* attention = new views::AttentionView(window);
  attention->setObjectName("attention_view");
  impl_->add("attention", QObject::tr("Attention"), attention, explained("attention"), Qt::RightDockWidgetArea)
      .set_snapshot = [attention](SnapshotPtr s) { attention->set_snapshot(std::move(s)); };
  auto* kernel = new views::KernelView(window);
  kernel->setObjectName("kernel_view");
  impl_->add("kernel", QObject::tr("Kernel"), kernel, explained("kernel"), Qt::RightDockWidgetArea).set_snapshot =
      [kernel](SnapshotPtr s) { kernel->set_snapshot(std::move(s)); };
  auto* mamba = new views::MambaView(window);
  mamba->setObjectName("mamba_view");
  impl_->add("mamba", QObject::tr("Mamba internals"), mamba, explained("mamba"), Qt::RightDockWidgetArea)
      .set_snapshot = [mamba](SnapshotPtr s) { mamba->set_snapshot(std::move(s)); };
  // One layer/head choice across the three views.
  auto follow = [attention, kernel, mamba](QObject* from) {
    return [=](int layer, int head) {
      if (from != attention && (attention->layer() != layer || attention->head() != head))
        attention->set_selection(layer, head);
      if (from != kernel && (kernel->layer() != layer || kernel->head() != head)) kernel->set_selection(layer, head);
      if (from != mamba && (mamba->layer() != layer || mamba->head() != head)) mamba->set_selection(layer, head);
    };
  };
  QObject::connect(attention, &views::AttentionView::selection_changed, attention, follow(attention));
  QObject::connect(kernel, &views::KernelView::selection_changed, kernel, follow(kernel));
  QObject::connect(mamba, &views::MambaView::selection_changed, mamba, follow(mamba));

  auto* inspector = new views::InspectorView(window);
  inspector->setObjectName("inspector");
  impl_->inspector = inspector;
  auto& e = impl_->add("inspector", QObject::tr("Inspector"), inspector, explained("inspector"),
                       Qt::RightDockWidgetArea);
  e.set_snapshot = [inspector](SnapshotPtr s) { inspector->set_snapshot(std::move(s)); };
  QObject::connect(inspector, &views::InspectorView::cell_selected, attention, [attention](int layer, int head, int) {
    if (head >= 0) attention->set_selection(layer, head);
  });
  QObject::connect(inspector, &views::InspectorView::knobs_edited, &controller, &RunController::apply_knobs);
  QObject::connect(&controller, &RunController::run_started, inspector,
                   [inspector](const RunStarted& info) { inspector->set_knob_values(info.knobs); });
  QObject::connect(&controller, &RunController::knobs_applied, inspector,
                   [inspector](const QString&, qint64, const snapshot::KnobEdit& applied) {
                     inspector->set_knob_values(applied);
                   });
  QObject::connect(&controller, &RunController::state_changed, inspector,
                   [inspector, &controller](UiRunState) { inspector->set_knobs_enabled(controller.active()); });
  inspector->set_knobs_enabled(false);

  for (size_t i = 1; i < impl_->entries.size(); ++i)
    window->tabifyDockWidget(impl_->entries[0].dock, impl_->entries[i].dock);
  impl_->entries[0].dock->raise();
  for (auto& entry : impl_->entries)
    docks_.push_back(entry.dock);
}

InspectionDocks::~InspectionDocks() = default;

void InspectionDocks::set_snapshot(SnapshotPtr snapshot) {
  for (auto& e : impl_->entries)
    if (e.set_snapshot) e.set_snapshot(snapshot);
}

void InspectionDocks::refresh(bool force) {
  for (auto& e : impl_->entries)
    if (e.refresh && e.dock->isVisible()) e.refresh(force);
}

void InspectionDocks::set_teaching(bool on) {
  for (auto& e : impl_->entries)
    e.explanation->setVisible(on);
}

QStringList InspectionDocks::view_names() const {
  QStringList names;
  for (const auto& e : impl_->entries)
    names << e.name;
  return names;
}

QWidget* InspectionDocks::view_widget(const QString& name) const {
  for (const auto& e : impl_->entries)
    if (e.name == name) return e.dock->widget();
  return nullptr;
}

QDockWidget* InspectionDocks::dock(const QString& name) const {
  for (const auto& e : impl_->entries)
    if (e.name == name) return e.dock;
  return nullptr;
}

}  // namespace hedgelab::gui
