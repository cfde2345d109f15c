#include "app/gui/about.h"

#include <QMessageBox>
#include <QtGlobal>

#include "sessions/session_types.h"

namespace hedgelab::gui {

QString version_line() {
  const sessions::Provenance p = sessions::make_provenance();
  return QString("HedgeLab %1 (Qt %2, LibTorch %3, HDF5 %4)")
      .arg(QString::fromStdString(p.app_version), qVersion(), QString::fromStdString(p.torch_version),
           QString::fromStdString(p.hdf5_version));
}

void show_about(QWidget* parent) {
  const sessions::Provenance p = sessions::make_provenance();
  QMessageBox::about(
      parent, QObject::tr("About HedgeLab"),
      QObject::tr("<h3>HedgeLab %1</h3>"
                  "<p>A lab for distilling Transformer language models into Mamba-style students: stage 1 "
                  "transfers attention into Hedgehog linear attention, stage 2 trains the HedgeMamba "
                  "student end to end.</p>"
                  "<table><tr><td>Qt</td><td>%2 (built with %3)</td></tr>"
                  "<tr><td>LibTorch</td><td>%4</td></tr>"
                  "<tr><td>HDF5</td><td>%5</td></tr></table>")
          .arg(QString::fromStdString(p.app_version), qVersion(), QT_VERSION_STR,
               QString::fromStdString(p.torch_version), QString::fromStdString(p.hdf5_version)));
}

}  // namespace hedgelab::gui
