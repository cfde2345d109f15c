#include "app/gui/screenshot.h"

#include <QApplication>
#include <QDockWidget>
#include <QImage>
#include <QPixmap>

#include "app/gui/main_window.h"

namespace hedgelab::gui {

namespace {
bool blank(const QImage& image) {
  if (image.isNull() || image.width() == 0 || image.height() == 0) return true;
  const QRgb first = image.pixel(0, 0);
  for (int y = 0; y < image.height(); y += 3)
    for (int x = 0; x < image.width(); x += 3)
      if (image.pixel(x, y) != first) return false;
  return true;
}
}  // namespace

bool image_is_blank(const QString& path) {
  return blank(QImage(path));
}

bool save_screenshot(MainWindow& window, const QString& view, const QString& path, QString* error) {
  QWidget* widget = window.view_widget(view.isEmpty() ? QStringLiteral("window") : view);
  if (!widget) {
    if (error)
      *error =
          "--view: unknown view '" + view + "' (expected one of: " + window.view_names().join(", ") + ")";
    return false;
  }
  // A view in a tabbed or hidden dock: bring it to the front so it has a size and is laid out.
  for (QWidget* w = widget; w; w = w->parentWidget())
    if (auto* dock = qobject_cast<QDockWidget*>(w)) {
      dock->show();
      dock->raise();
    }
  window.refresh_views(true);
  for (int i = 0; i < 5; ++i)
    QApplication::processEvents();
  const QImage image = widget->grab().toImage();
  if (blank(image)) {
    if (error) *error = path + ": the rendered image is blank (one colour)";
    return false;
  }
  if (!image.save(path, "PNG")) {
    if (error) *error = path + ": cannot be written";
    return false;
  }
  return true;
}

}  // namespace hedgelab::gui
