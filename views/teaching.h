// Teaching mode: for each view a short explanation in the lab's own words (what you are looking at, what to
// expect as training moves), a guided order through the views for a 10-minute class, and a panel that shows
// the explanation beside a view. The main window picks fonts; this file only provides text and widgets.
#pragma once

#include <QString>
#include <QWidget>
#include <vector>

class QTextBrowser;

namespace hedgelab::views {

struct TeachingText {
  QString view;    // "loss_curves", "alignment", "attention", "kernel", "mamba", "inspector"
  QString title;   // the view's name as the window shows it
  QString look;    // what the viewer is looking at
  QString expect;  // what to expect as training moves
};

// Every view's explanation, in the guided order.
const std::vector<TeachingText>& teaching_texts();
// The explanation of `view` as simple HTML (title, "What you see", "As training moves"); empty for an
// unknown view.
QString teaching_html(const QString& view);
// The same as plain text.
QString teaching_plain(const QString& view);

// One stop of the guided class.
struct ClassStep {
  QString view;   // which view to open (a TeachingText::view)
  int minutes;    // time to spend
  QString focus;  // what to show and ask on this stop
};
// The 10-minute class: stops in order, minutes adding up to 10.
const std::vector<ClassStep>& class_plan();
QString class_plan_html();

// The explanation of one view, shown beside it (a read-only text panel).
class TeachingPanel : public QWidget {
  Q_OBJECT

 public:
  explicit TeachingPanel(QWidget* parent = nullptr);
  void set_view(const QString& view);
  QString view() const { return view_; }
  QString text() const;  // what the panel shows, as plain text

 private:
  QString view_;
  QTextBrowser* browser_ = nullptr;
};

// `view` and its explanation side by side (a splitter; the panel can be collapsed). Takes ownership of view.
QWidget* with_teaching(QWidget* view, const QString& view_id, QWidget* parent = nullptr);

}  // namespace hedgelab::views
