#include "app/gui/appearance.h"

#include <QApplication>
#include <QFont>
#include <QPalette>
#include <QStyle>
#include <QStyleFactory>
#include <optional>

namespace hedgelab::gui {

namespace {
std::optional<QPalette> g_system_palette;
std::optional<QFont> g_system_font;

QPalette dark_palette() {
  QPalette p;
  const QColor window(37, 39, 43), base(27, 29, 32), text(222, 224, 228), disabled(120, 122, 126);
  p.setColor(QPalette::Window, window);
  p.setColor(QPalette::WindowText, text);
  p.setColor(QPalette::Base, base);
  p.setColor(QPalette::AlternateBase, window);
  p.setColor(QPalette::ToolTipBase, base);
  p.setColor(QPalette::ToolTipText, text);
  p.setColor(QPalette::Text, text);
  p.setColor(QPalette::Button, window);
  p.setColor(QPalette::ButtonText, text);
  p.setColor(QPalette::BrightText, QColor(255, 90, 90));
  p.setColor(QPalette::Highlight, QColor(42, 130, 218));
  p.setColor(QPalette::HighlightedText, Qt::white);
  p.setColor(QPalette::Link, QColor(90, 170, 250));
  p.setColor(QPalette::PlaceholderText, disabled);
  for (auto role : {QPalette::WindowText, QPalette::Text, QPalette::ButtonText})
    p.setColor(QPalette::Disabled, role, disabled);
  return p;
}

QPalette light_palette() {
  return QApplication::style()->standardPalette();
}
}  // namespace

Theme theme_from_string(const QString& name) {
  if (name == "dark") return Theme::Dark;
  if (name == "light") return Theme::Light;
  return Theme::System;
}

QString to_string(Theme theme) {
  switch (theme) {
    case Theme::Dark:
      return "dark";
    case Theme::Light:
      return "light";
    default:
      return "system";
  }
}

void apply_theme(Theme theme) {
  if (!g_system_palette) g_system_palette = QApplication::palette();
  // Fusion draws every palette faithfully (a dark palette on the default Linux style can look half-dark).
  if (theme != Theme::System) QApplication::setStyle(QStyleFactory::create("Fusion"));
  switch (theme) {
    case Theme::Dark:
      QApplication::setPalette(dark_palette());
      break;
    case Theme::Light:
      QApplication::setPalette(light_palette());
      break;
    case Theme::System:
      QApplication::setPalette(*g_system_palette);
      break;
  }
}

bool palette_is_dark() {
  const QPalette p = QApplication::palette();
  return p.color(QPalette::Window).lightness() < p.color(QPalette::WindowText).lightness();
}

void apply_font_scale(double scale) {
  if (!g_system_font) g_system_font = QApplication::font();
  QFont f = *g_system_font;
  if (f.pointSizeF() > 0)
    f.setPointSizeF(f.pointSizeF() * scale);
  else
    f.setPixelSize(static_cast<int>(f.pixelSize() * scale));
  QApplication::setFont(f);
}

}  // namespace hedgelab::gui
