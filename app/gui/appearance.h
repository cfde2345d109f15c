// How the window looks: the theme (follow the system palette, or force dark or light) and the teaching mode's
// larger fonts. Applied to the whole application.
#pragma once

#include <QString>

namespace hedgelab::gui {

enum class Theme { System, Dark, Light };

Theme theme_from_string(const QString& name);  // "system" (default), "dark", "light"
QString to_string(Theme theme);
// The system palette is remembered at the first call, so "system" can be restored after "dark".
void apply_theme(Theme theme);
// Whether the palette in use is dark (window colour darker than its text).
bool palette_is_dark();
// Teaching mode: every font scaled by `scale` (1 = the system's size).
void apply_font_scale(double scale);

}  // namespace hedgelab::gui
