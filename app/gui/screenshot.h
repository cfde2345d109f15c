// hedgelab --screenshot: render the window (or one view) to a PNG once the data it should show is there,
// for tests and documentation.
#pragma once

#include <QString>

class QWidget;

namespace hedgelab::gui {

class MainWindow;

// Renders `view` ("window" or one of MainWindow::view_names()) to `path`. False with `error` set when the
// view is unknown, the image is blank (one colour) or the file cannot be written.
bool save_screenshot(MainWindow& window, const QString& view, const QString& path, QString* error);
// Whether an image file holds more than one colour (a rendered window, not an empty surface).
bool image_is_blank(const QString& path);

}  // namespace hedgelab::gui
