// Help ▸ About: HedgeLab's version and the Qt, LibTorch and HDF5 it runs with.
#pragma once

#include <QString>

class QWidget;

namespace hedgelab::gui {

// "HedgeLab 0.1.0 (Qt 6.4.2, LibTorch 1.13.0, HDF5 1.10.8)".
QString version_line();
void show_about(QWidget* parent);

}  // namespace hedgelab::gui
