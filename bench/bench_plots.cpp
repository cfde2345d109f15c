// Plot redraw cost: a loss plot of 100k-point curves (the total and 3 loss parts) panned and zoomed, and the
// loss-curve view redrawn from a RunData of 100k steps. Median and max milliseconds per replot
// (QCustomPlot's own replot timer), offscreen.
#include <QApplication>
#include <QElapsedTimer>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include "views/loss_curves_view.h"
#include "views/plot_canvas.h"
#include "views/run_data.h"

using namespace hedgelab;

namespace {
void report(const char* what, std::vector<double> ms) {
  std::sort(ms.begin(), ms.end());
  std::printf("%-58s median %6.2f ms  max %6.2f ms  (%zu replots)\n", what, ms[ms.size() / 2], ms.back(),
              ms.size());
}
}  // namespace

int main(int argc, char** argv) {
  QApplication app(argc, argv);
  const int n = 100000;
  views::PlotCanvas canvas;
  canvas.resize(1200, 700);
  canvas.show();
  QVector<double> x(n);
  for (int i = 0; i < n; ++i)
    x[i] = i;
  for (int c = 0; c < 4; ++c) {
    QVector<double> y(n);
    for (int i = 0; i < n; ++i)
      y[i] = (3.0 + c) * std::exp(-i / 30000.0) + 0.1 * std::sin(i * 0.37 + c) + 0.05 * ((i * 7919 + c) % 13);
    canvas.set_curve_data(canvas.add_curve(QString("curve %1").arg(c), views::series_color(c)), x, y);
  }
  canvas.rescale();
  std::vector<double> pan, zoom;
  for (int k = 0; k < 60; ++k) {
    const double lo = k * 1000.0;
    canvas.set_x_range(lo, lo + 60000);
    canvas.to_image(1200, 700);  // forces a synchronous replot
    pan.push_back(canvas.last_replot_ms());
  }
  for (int k = 0; k < 60; ++k) {
    const double half = n / 2.0 / std::pow(1.08, k);
    canvas.set_x_range(n / 2.0 - half, n / 2.0 + half);
    canvas.to_image(1200, 700);
    zoom.push_back(canvas.last_replot_ms());
  }
  report("pan across 4 curves x 100k points", pan);
  report("zoom into 4 curves x 100k points", zoom);

  views::RunData data;
  data.set_stage_steps(20000, 80000);
  for (int i = 1; i <= n; ++i) {
    snapshot::StepReport r;
    r.step = i <= 20000 ? i : i - 20000;
    r.total = 3.0 * std::exp(-i / 30000.0) + 0.1 * std::sin(i * 0.37);
    r.lr = 1e-3;
    r.grad_norm = 1.0;
    r.tokens_per_second = 2500;
    if (i > 20000) r.parts = {{"ce", r.total * 0.6}, {"kd", r.total * 0.4}};
    data.add_step(i <= 20000 ? "stage1" : "stage2", r);
  }
  views::LossCurvesView view;
  view.resize(1500, 900);
  view.show();
  view.set_data(&data);
  std::vector<double> redraw;
  for (int k = 0; k < 20; ++k) {
    QElapsedTimer t;
    t.start();
    view.refresh(true);
    view.loss_plot()->to_image(500, 350);
    redraw.push_back(t.nsecsElapsed() * 1e-6);
  }
  report("loss view: 6 plots fed 100k steps, loss plot redrawn (wall)", redraw);
  return 0;
}
