// The one bridge between Qt and Dear ImGui: a QOpenGLWidget that owns an ImGui context, forwards Qt's mouse
// (move, buttons, wheel), keyboard and text input to it, sizes ImGui's display to the widget in logical
// pixels with the device-pixel ratio as the framebuffer scale (HiDPI), and draws with ImGui's OpenGL3
// backend. A subclass (override draw_frame) or a callback (set_draw) issues the frame's ImGui calls. It
// repaints on a timer only while visible, and after input. Nothing else in the lab includes imgui.h except
// the .cpp files of the widgets built on this host.
//
// ImGui 1.86 reads button and key state once per frame, so a press and release that arrive between two
// frames would be lost; the host queues input and feeds ImGui at most one button or key transition per
// frame, asking for another frame while input remains (what later ImGui versions do themselves).
#pragma once

#include <QOpenGLWidget>
#include <QPoint>
#include <QString>
#include <QTimer>
#include <cstdint>
#include <deque>
#include <functional>

struct ImGuiContext;

namespace hedgelab::views {

class ImGuiHost : public QOpenGLWidget {
  Q_OBJECT

 public:
  explicit ImGuiHost(QWidget* parent = nullptr);
  ~ImGuiHost() override;

  // The frame's content: called between ImGui::NewFrame() and ImGui::Render() with this host's context
  // current. Used by the default draw_frame().
  void set_draw(std::function<void()> draw) { draw_ = std::move(draw); }
  // Milliseconds between repaints while visible (default 33: about 30 frames per second); 0 = repaint only
  // after input or update().
  void set_frame_interval(int ms);
  int frame_interval() const { return interval_ms_; }

  // Text size relative to ImGui's 13-pixel default (teaching mode: the app's font scale); from the next
  // frame.
  void set_font_scale(float scale);
  float font_scale() const { return font_scale_; }

  // Frames drawn so far and the CPU time of the last one (ImGui frame and GL submission), for benchmarks.
  int64_t frames() const { return frames_; }
  double last_frame_ms() const { return last_frame_ms_; }
  // Renders one frame now (making the context current) and returns it; for tests and screenshots.
  QImage render_frame();
  // True when input is still queued for later frames.
  bool input_pending() const { return !queue_.empty(); }

  ImGuiContext* imgui_context() const { return context_; }

 Q_SIGNALS:
  void frame_drawn();

 protected:
  virtual void draw_frame();

  void initializeGL() override;
  void resizeGL(int w, int h) override;
  void paintGL() override;

  void mouseMoveEvent(QMouseEvent* event) override;
  void mousePressEvent(QMouseEvent* event) override;
  void mouseReleaseEvent(QMouseEvent* event) override;
  void mouseDoubleClickEvent(QMouseEvent* event) override;
  void wheelEvent(QWheelEvent* event) override;
  void keyPressEvent(QKeyEvent* event) override;
  void keyReleaseEvent(QKeyEvent* event) override;
  void leaveEvent(QEvent* event) override;
  void focusOutEvent(QFocusEvent* event) override;
  void showEvent(QShowEvent* event) override;
  void hideEvent(QHideEvent* event) override;
  bool event(QEvent* event) override;

 private:
  struct Input {
    enum Kind { Move, Button, Wheel, Key, Text, Leave, ReleaseAll } kind = Move;
    QPointF pos;
    int index = 0;  // button (0 left, 1 right, 2 middle) or key
    bool down = false;
    float wheel_x = 0, wheel_y = 0;
    Qt::KeyboardModifiers modifiers;
    QString text;
  };
  void push(Input input);
  void feed_input();  // moves queued input into ImGui's IO, up to one transition
  void make_current_context() const;

  ImGuiContext* context_ = nullptr;
  bool gl_ready_ = false;
  QMetaObject::Connection context_gone_;  // the GL context's aboutToBeDestroyed
  std::function<void()> draw_;
  QTimer timer_;
  int interval_ms_ = 33;
  float font_scale_ = 1.0f;
  std::deque<Input> queue_;
  int64_t frames_ = 0;
  double last_frame_ms_ = 0.0;
};

}  // namespace hedgelab::views
