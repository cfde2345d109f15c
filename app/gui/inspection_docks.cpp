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
  views::InspectorView* inspector = nullptr;  // made when its dock is first shown
  SnapshotPtr last_snapshot;
  snapshot::KnobEdit last_knobs;

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

InspectionDocks::InspectionDocks(QMainWindow* window, RunController& controller)
    : impl_(std::make_unique<Impl>()) {
  impl_->window = window;
  impl_->controller = &controller;
  views::register_inspector_metatypes();
  auto explained = [](const QString& id) { return views::teaching_html(id); };

  auto* attention = new views::AttentionView(window);
  attention->setObjectName("attention_view");
  impl_
      ->add("attention", QObject::tr("Attention"), attention, explained("attention"), Qt::RightDockWidgetArea)
      .set_snapshot = [attention](SnapshotPtr s) { attention->set_snapshot(std::move(s)); };
  auto* kernel = new views::KernelView(window);
  kernel->setObjectName("kernel_view");
  impl_->add("kernel", QObject::tr("Kernel"), kernel, explained("kernel"), Qt::RightDockWidgetArea)
      .set_snapshot = [kernel](SnapshotPtr s) { kernel->set_snapshot(std::move(s)); };
  auto* mamba = new views::MambaView(window);
  mamba->setObjectName("mamba_view");
  impl_->add("mamba", QObject::tr("Mamba internals"), mamba, explained("mamba"), Qt::RightDockWidgetArea)
      .set_snapshot = [mamba](SnapshotPtr s) { mamba->set_snapshot(std::move(s)); };
  // One layer/head choice across the three views.
  auto follow = [attention, kernel, mamba](QObject* from) {
    return [=](int layer, int head) {
      if (from != attention && (attention->layer() != layer || attention->head() != head))
        attention->set_selection(layer, head);
      if (from != kernel && (kernel->layer() != layer || kernel->head() != head))
        kernel->set_selection(layer, head);
      if (from != mamba && (mamba->layer() != layer || mamba->head() != head))
        mamba->set_selection(layer, head);
    };
  };
  QObject::connect(attention, &views::AttentionView::selection_changed, attention, follow(attention));
  QObject::connect(kernel, &views::KernelView::selection_changed, kernel, follow(kernel));
  QObject::connect(mamba, &views::MambaView::selection_changed, mamba, follow(mamba));

  // The ImGui inspector is an OpenGL widget, and the first one shown switches the whole window to OpenGL
  // composition — cheap on a GPU, but with a software renderer (Mesa llvmpipe, Xvfb) every repaint of the
  // window then costs tens to hundreds of milliseconds (docs/results.md). So it is created when its dock is
  // first shown; until then a note holds its place.
  auto* placeholder = new QLabel(QObject::tr("The inspector starts when this tab is shown."), window);
  placeholder->setAlignment(Qt::AlignCenter);
  auto& e = impl_->add("inspector", QObject::tr("Inspector"), placeholder, explained("inspector"),
                       Qt::RightDockWidgetArea);
  e.set_snapshot = [impl = impl_.get()](SnapshotPtr s) {
    impl->last_snapshot = s;
    if (impl->inspector) impl->inspector->set_snapshot(std::move(s));
  };
  QDockWidget* inspector_dock = e.dock;
  auto create_inspector = [impl = impl_.get(), placeholder, attention, &controller](bool visible) {
    if (!visible || impl->inspector) return;
    auto* inspector = new views::InspectorView(placeholder->parentWidget());
    inspector->setObjectName("inspector");
    placeholder->parentWidget()->layout()->replaceWidget(placeholder, inspector);
    placeholder->hide();
    impl->inspector = inspector;
    inspector->set_snapshot(impl->last_snapshot);
    inspector->set_knob_values(impl->last_knobs);
    inspector->set_knobs_enabled(controller.active());
    QObject::connect(inspector, &views::InspectorView::cell_selected, attention,
                     [attention](int layer, int head, int) {
                       if (head >= 0) attention->set_selection(layer, head);
                     });
    QObject::connect(inspector, &views::InspectorView::knobs_edited, &controller,
                     &RunController::apply_knobs);
  };
  QObject::connect(inspector_dock, &QDockWidget::visibilityChanged, inspector_dock, create_inspector);
  QObject::connect(&controller, &RunController::run_started, inspector_dock,
                   [impl = impl_.get()](const RunStarted& info) {
                     impl->last_knobs = info.knobs;
                     if (impl->inspector) impl->inspector->set_knob_values(info.knobs);
                   });
  QObject::connect(&controller, &RunController::knobs_applied, inspector_dock,
                   [impl = impl_.get()](const QString&, qint64, const snapshot::KnobEdit& applied) {
                     if (applied.lr) impl->last_knobs.lr = applied.lr;
                     if (applied.ce_weight) impl->last_knobs.ce_weight = applied.ce_weight;
                     if (applied.kd_weight) impl->last_knobs.kd_weight = applied.kd_weight;
                     if (applied.align_weight) impl->last_knobs.align_weight = applied.align_weight;
                     if (applied.kd_temperature) impl->last_knobs.kd_temperature = applied.kd_temperature;
                     if (applied.probe_every) impl->last_knobs.probe_every = applied.probe_every;
                     if (impl->inspector) impl->inspector->set_knob_values(applied);
                   });
  QObject::connect(&controller, &RunController::state_changed, inspector_dock,
                   [impl = impl_.get(), &controller](UiRunState) {
                     if (impl->inspector) impl->inspector->set_knobs_enabled(controller.active());
                   });

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

void InspectionDocks::set_knob_values(const snapshot::KnobEdit& values) {
  impl_->last_knobs = values;
  if (impl_->inspector) impl_->inspector->set_knob_values(values);
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
