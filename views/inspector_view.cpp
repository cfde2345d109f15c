#include "views/inspector_view.h"

#include <imgui.h>

#include <QMetaObject>
#include <algorithm>
#include <cmath>
#include <tuple>

namespace hedgelab::views {

namespace {

constexpr float kCell = 18.0f;  // cell side in pixels
constexpr float kGap = 10.0f;   // between figure blocks

ImU32 rgb(double r, double g, double b) {
  auto c = [](double v) { return static_cast<int>(std::lround(std::clamp(v, 0.0, 1.0) * 255.0)); };
  return IM_COL32(c(r), c(g), c(b), 255);
}

// t in [0, 1] → a perceptually ordered ramp (dark blue → teal → yellow, viridis-like stops).
ImU32 sequential(double t) {
  static const double stops[5][3] = {{0.267, 0.005, 0.329},
                                     {0.231, 0.322, 0.545},
                                     {0.129, 0.569, 0.549},
                                     {0.369, 0.788, 0.384},
                                     {0.992, 0.906, 0.145}};
  t = std::clamp(t, 0.0, 1.0) * 4.0;
  const int i = std::min(3, static_cast<int>(t));
  const double f = t - i;
  return rgb(stops[i][0] + f * (stops[i + 1][0] - stops[i][0]),
             stops[i][1] + f * (stops[i + 1][1] - stops[i][1]),
             stops[i][2] + f * (stops[i + 1][2] - stops[i][2]));
}

// t in [−1, 1] → blue (−) through white (0) to red (+).
ImU32 diverging(double t) {
  t = std::clamp(t, -1.0, 1.0);
  if (t < 0) return rgb(1.0 + t * 0.8, 1.0 + t * 0.6, 1.0);
  return rgb(1.0, 1.0 - t * 0.7, 1.0 - t * 0.8);
}

constexpr ImU32 kMissing = IM_COL32(70, 70, 70, 255);

}  // namespace

const char* figure_name(InspectorFigure f) {
  switch (f) {
    case InspectorFigure::CosineForced:
      return "cos teacher-forced";
    case InspectorFigure::CosineFree:
      return "cos free-running";
    case InspectorFigure::EntropyGap:
      return "entropy gap (student - teacher)";
    case InspectorFigure::RowKl:
      return "row KL(P || a)";
    case InspectorFigure::Spearman:
      return "Spearman rho";
  }
  return "";
}

bool figure_per_head(InspectorFigure f) {
  return f != InspectorFigure::CosineForced && f != InspectorFigure::CosineFree;
}

double figure_value(const snapshot::ProbeSnapshot& s, InspectorFigure f, int64_t layer, int64_t head) {
  const double nan = std::nan("");
  if (layer < 0 || layer >= s.layers) return nan;
  if (!figure_per_head(f)) {
    if (layer >= static_cast<int64_t>(s.alignment.size())) return nan;
    const auto& a = s.alignment[static_cast<size_t>(layer)];
    return f == InspectorFigure::CosineForced ? a.teacher_forced : a.free_running;
  }
  if (head < 0 || head >= s.heads || static_cast<int64_t>(s.attention.size()) < s.layers * s.heads)
    return nan;
  const auto& h = s.head(layer, head);
  switch (f) {
    case InspectorFigure::EntropyGap:
      return h.student_entropy - h.teacher_entropy;
    case InspectorFigure::RowKl:
      return h.row_kl;
    case InspectorFigure::Spearman:
      return h.spearman;
    default:
      return nan;
  }
}

void register_inspector_metatypes() {
  qRegisterMetaType<hedgelab::snapshot::KnobEdit>("hedgelab::snapshot::KnobEdit");
}

InspectorView::InspectorView(QWidget* parent) : ImGuiHost(parent) {
  register_inspector_metatypes();
  knobs_.lr = 1e-3;
  knobs_.ce_weight = 1.0;
  knobs_.kd_weight = 1.0;
  knobs_.align_weight = 0.0;
  knobs_.kd_temperature = 1.0;
  knobs_.probe_every = 0;
  setMinimumSize(320, 240);
}

void InspectorView::set_snapshot(std::shared_ptr<const snapshot::ProbeSnapshot> snapshot) {
  snapshot_ = std::move(snapshot);
  cells_.clear();
  update();
}

void InspectorView::set_knob_values(const snapshot::KnobEdit& v) {
  auto take = [](auto& into, const auto& from) {
    if (from) into = from;
  };
  take(knobs_.lr, v.lr);
  take(knobs_.ce_weight, v.ce_weight);
  take(knobs_.kd_weight, v.kd_weight);
  take(knobs_.align_weight, v.align_weight);
  take(knobs_.kd_temperature, v.kd_temperature);
  take(knobs_.probe_every, v.probe_every);
  update();
}

QRectF InspectorView::cell_rect(InspectorFigure figure, int layer, int head) const {
  auto it = cells_.find({static_cast<int>(figure), layer, figure_per_head(figure) ? head : -1});
  return it == cells_.end() ? QRectF() : it->second;
}

QRectF InspectorView::knob_rect(const std::string& name) const {
  auto it = knob_rects_.find(name);
  return it == knob_rects_.end() ? QRectF() : it->second;
}

void InspectorView::draw_frame() {
  const ImGuiIO& io = ImGui::GetIO();
  ImGui::SetNextWindowPos(ImVec2(0, 0));
  ImGui::SetNextWindowSize(io.DisplaySize);
  ImGui::Begin("Inspector", nullptr,
               ImGuiWindowFlags_NoTitleBar | ImGuiWindowFlags_NoResize | ImGuiWindowFlags_NoMove |
                   ImGuiWindowFlags_NoCollapse | ImGuiWindowFlags_NoSavedSettings |
                   ImGuiWindowFlags_HorizontalScrollbar);
  draw_grid();
  ImGui::Separator();
  draw_knobs();
  ImGui::End();
}

void InspectorView::draw_grid() {
  if (!snapshot_) {
    ImGui::TextUnformatted("No probe snapshot yet: the grid fills at the run's first probe.");
    return;
  }
  const auto& s = *snapshot_;
  ImGui::Text("%s  %s  step %lld  tokens %lld", s.run.c_str(), s.stage.c_str(),
              static_cast<long long>(s.step), static_cast<long long>(s.tokens_seen));
  const int L = static_cast<int>(s.layers), H = static_cast<int>(s.heads);
  if (L == 0) return;
  // Colour scales: cosines on [0, 1], ρ on [−1, 1], the entropy gap symmetric on the largest |gap|, KL on
  // [0, the largest KL] of this snapshot.
  double max_gap = 1e-9, max_kl = 1e-9;
  for (int l = 0; l < L; ++l)
    for (int h = 0; h < H; ++h) {
      const double g = figure_value(s, InspectorFigure::EntropyGap, l, h);
      const double k = figure_value(s, InspectorFigure::RowKl, l, h);
      if (std::isfinite(g)) max_gap = std::max(max_gap, std::abs(g));
      if (std::isfinite(k)) max_kl = std::max(max_kl, k);
    }
  auto color_of = [&](InspectorFigure f, double v) -> ImU32 {
    if (!std::isfinite(v)) return kMissing;
    switch (f) {
      case InspectorFigure::CosineForced:
      case InspectorFigure::CosineFree:
        return sequential(v);
      case InspectorFigure::EntropyGap:
        return diverging(v / max_gap);
      case InspectorFigure::RowKl:
        return sequential(1.0 - v / max_kl);  // bright = close to the teacher
      case InspectorFigure::Spearman:
        return diverging(v);
    }
    return kMissing;
  };

  ImDrawList* draw = ImGui::GetWindowDrawList();
  const ImVec2 origin = ImGui::GetCursorScreenPos();
  const float label_w = ImGui::CalcTextSize("L00").x + 6.0f;
  const float header_h = ImGui::GetTextLineHeightWithSpacing() * 2.0f;
  // Block x offsets: two one-column cosine blocks, then three blocks of H columns.
  float x = origin.x + label_w;
  float block_x[kInspectorFigures];
  for (int f = 0; f < kInspectorFigures; ++f) {
    block_x[f] = x;
    x += (figure_per_head(static_cast<InspectorFigure>(f)) ? H : 1) * kCell + kGap;
  }
  // Header: the figure over its block, then TF/FR under "cosine" and head numbers under the others.
  static const char* top_names[kInspectorFigures] = {"cosine", "", "H gap", "KL", "rho"};
  for (int f = 0; f < kInspectorFigures; ++f)
    draw->AddText(ImVec2(block_x[f], origin.y), ImGui::GetColorU32(ImGuiCol_Text), top_names[f]);
  draw->AddText(ImVec2(block_x[0], origin.y + header_h * 0.5f), ImGui::GetColorU32(ImGuiCol_TextDisabled),
                "TF");
  draw->AddText(ImVec2(block_x[1], origin.y + header_h * 0.5f), ImGui::GetColorU32(ImGuiCol_TextDisabled),
                "FR");
  for (int f = 2; f < kInspectorFigures; ++f)
    for (int h = 0; h < H; ++h) {
      char buf[16];
      std::snprintf(buf, sizeof buf, "%d", h);
      draw->AddText(ImVec2(block_x[f] + h * kCell + 3, origin.y + header_h * 0.5f),
                    ImGui::GetColorU32(ImGuiCol_TextDisabled), buf);
    }
  const float top = origin.y + header_h;
  for (int l = 0; l < L; ++l) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "L%d", l);
    draw->AddText(ImVec2(origin.x, top + l * kCell + 2), ImGui::GetColorU32(ImGuiCol_Text), buf);
  }
  cells_.clear();
  int hovered_f = -1, hovered_l = -1, hovered_h = -1;
  for (int f = 0; f < kInspectorFigures; ++f) {
    const auto fig = static_cast<InspectorFigure>(f);
    const int cols = figure_per_head(fig) ? H : 1;
    for (int l = 0; l < L; ++l)
      for (int c = 0; c < cols; ++c) {
        const int head = figure_per_head(fig) ? c : -1;
        const ImVec2 a(block_x[f] + c * kCell, top + l * kCell);
        const ImVec2 b(a.x + kCell - 1, a.y + kCell - 1);
        ImGui::SetCursorScreenPos(a);
        ImGui::PushID(f * 1000003 + l * 1009 + c);
        const bool clicked = ImGui::InvisibleButton("cell", ImVec2(kCell - 1, kCell - 1));
        ImGui::PopID();
        draw->AddRectFilled(a, b, color_of(fig, figure_value(s, fig, l, head)));
        const bool selected = l == selected_layer_ && (head == selected_head_ || head < 0);
        if (selected) draw->AddRect(a, b, IM_COL32(255, 255, 255, 255), 0.0f, 0, 2.0f);
        cells_[{f, l, head}] = QRectF(a.x, a.y, kCell - 1, kCell - 1);  // ImGui's screen = widget pixels
        if (ImGui::IsItemHovered()) {
          hovered_f = f;
          hovered_l = l;
          hovered_h = head;
        }
        if (clicked) {
          selected_layer_ = l;
          selected_head_ = head;
          // After the frame: a slot may open views or take time.
          QMetaObject::invokeMethod(
              this, [this, l, head, f] { Q_EMIT cell_selected(l, head, f); }, Qt::QueuedConnection);
        }
      }
  }
  ImGui::SetCursorScreenPos(ImVec2(origin.x, top + L * kCell + 4));
  ImGui::Dummy(ImVec2(x - origin.x, 1));
  if (hovered_f >= 0) {
    ImGui::BeginTooltip();
    if (hovered_h >= 0)
      ImGui::Text("layer %d, head %d", hovered_l, hovered_h);
    else
      ImGui::Text("layer %d", hovered_l);
    ImGui::Separator();
    for (int f = 0; f < kInspectorFigures; ++f) {
      const auto fig = static_cast<InspectorFigure>(f);
      if (figure_per_head(fig) && hovered_h < 0) continue;
      const double v = figure_value(s, fig, hovered_l, hovered_h);
      ImGui::Text("%s%s: %.4f", f == hovered_f ? "> " : "  ", figure_name(fig), v);
    }
    if (hovered_h >= 0) {
      const auto& h = s.head(hovered_l, hovered_h);
      ImGui::Text("  entropy teacher %.4f, student %.4f nats", h.teacher_entropy, h.student_entropy);
    }
    ImGui::EndTooltip();
  }
  ImGui::TextDisabled(
      "TF teacher-forced, FR free-running. Colours: cos 0..1, rho -1..1, gap +-%.3g, KL 0..%.3g", max_gap,
      max_kl);
  ImGui::TextDisabled("(bright: close to the teacher). Hover a cell for its figures, click to open it.");
}

void InspectorView::emit_after_frame(const snapshot::KnobEdit& edit) {
  // Not inside paintGL: a slot may take its time or touch this widget.
  QMetaObject::invokeMethod(
      this, [this, edit] { Q_EMIT knobs_edited(edit); }, Qt::QueuedConnection);
}

void InspectorView::draw_knobs() {
  ImGui::TextUnformatted("Knobs (applied by the run between steps)");
  if (!knobs_enabled_) ImGui::TextDisabled("no run to steer: the knobs show the recorded values");
  auto remember = [&](const std::string& name) {
    const ImVec2 a = ImGui::GetItemRectMin(), b = ImGui::GetItemRectMax();
    knob_rects_[name] = QRectF(a.x, a.y, b.x - a.x, b.y - a.y);
  };
  ImGui::PushItemWidth(140);
  if (!knobs_enabled_) ImGui::PushStyleVar(ImGuiStyleVar_Alpha, 0.5f);
  const ImGuiInputTextFlags flags = knobs_enabled_ ? 0 : ImGuiInputTextFlags_ReadOnly;
  // Each field commits when its edit ends (Enter, Tab or a click elsewhere) with a valid value.
  auto number = [&](const char* label, const std::string& key, std::optional<double>& value, double lo,
                    bool open_low, const char* format, auto&& set_field) {
    double v = value.value_or(0.0);
    ImGui::InputDouble(label, &v, 0.0, 0.0, format, flags);
    remember(key);
    if (ImGui::IsItemDeactivatedAfterEdit() && knobs_enabled_) {
      const bool ok = std::isfinite(v) && (open_low ? v > lo : v >= lo);
      if (ok && v != value.value_or(std::nan(""))) {
        value = v;
        snapshot::KnobEdit e;
        set_field(e, v);
        emit_after_frame(e);
      }
    }
  };
  number("peak learning rate", "lr", knobs_.lr, 0.0, true, "%.3g",
         [](snapshot::KnobEdit& e, double v) { e.lr = v; });
  number("lambda CE", "ce_weight", knobs_.ce_weight, 0.0, false, "%.3g",
         [](snapshot::KnobEdit& e, double v) { e.ce_weight = v; });
  number("lambda KD", "kd_weight", knobs_.kd_weight, 0.0, false, "%.3g",
         [](snapshot::KnobEdit& e, double v) { e.kd_weight = v; });
  number("lambda align", "align_weight", knobs_.align_weight, 0.0, false, "%.3g",
         [](snapshot::KnobEdit& e, double v) { e.align_weight = v; });
  number("KD temperature", "kd_temperature", knobs_.kd_temperature, 0.0, true, "%.3g",
         [](snapshot::KnobEdit& e, double v) { e.kd_temperature = v; });
  int every = static_cast<int>(knobs_.probe_every.value_or(0));
  ImGui::InputInt("probe every (steps)", &every, 0, 0, flags);
  remember("probe_every");
  if (ImGui::IsItemDeactivatedAfterEdit() && knobs_enabled_ && every >= 0 && every != knobs_.probe_every) {
    knobs_.probe_every = every;
    snapshot::KnobEdit e;
    e.probe_every = every;
    emit_after_frame(e);
  }
  if (!knobs_enabled_) ImGui::PopStyleVar();
  ImGui::PopItemWidth();
  ImGui::TextDisabled("the loss weights and temperature act in stage 2");
}

}  // namespace hedgelab::views
