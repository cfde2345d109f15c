#include "views/imgui_host.h"

#include <backends/imgui_impl_opengl3.h>
#include <imgui.h>

#include <QClipboard>
#include <QElapsedTimer>
#include <QGuiApplication>
#include <QKeyEvent>
#include <QMouseEvent>
#include <QOpenGLContext>
#include <QOpenGLFunctions>
#include <QWheelEvent>
#include <algorithm>
#include <cfloat>

namespace hedgelab::views {

namespace {

// Qt's key → ImGui 1.86's key index (io.KeyMap maps ImGuiKey_X to index X); −1 for keys ImGui does not use
// by index (letters arrive as text).
int imgui_key(int qt_key) {
  switch (qt_key) {
    case Qt::Key_Tab:
      return ImGuiKey_Tab;
    case Qt::Key_Left:
      return ImGuiKey_LeftArrow;
    case Qt::Key_Right:
      return ImGuiKey_RightArrow;
    case Qt::Key_Up:
      return ImGuiKey_UpArrow;
    case Qt::Key_Down:
      return ImGuiKey_DownArrow;
    case Qt::Key_PageUp:
      return ImGuiKey_PageUp;
    case Qt::Key_PageDown:
      return ImGuiKey_PageDown;
    case Qt::Key_Home:
      return ImGuiKey_Home;
    case Qt::Key_End:
      return ImGuiKey_End;
    case Qt::Key_Insert:
      return ImGuiKey_Insert;
    case Qt::Key_Delete:
      return ImGuiKey_Delete;
    case Qt::Key_Backspace:
      return ImGuiKey_Backspace;
    case Qt::Key_Space:
      return ImGuiKey_Space;
    case Qt::Key_Return:
      return ImGuiKey_Enter;
    case Qt::Key_Escape:
      return ImGuiKey_Escape;
    case Qt::Key_Enter:
      return ImGuiKey_KeyPadEnter;
    case Qt::Key_A:
      return ImGuiKey_A;
    case Qt::Key_C:
      return ImGuiKey_C;
    case Qt::Key_V:
      return ImGuiKey_V;
    case Qt::Key_X:
      return ImGuiKey_X;
    case Qt::Key_Y:
      return ImGuiKey_Y;
    case Qt::Key_Z:
      return ImGuiKey_Z;
    default:
      return -1;
  }
}

int imgui_button(Qt::MouseButton b) {
  switch (b) {
    case Qt::LeftButton:
      return 0;
    case Qt::RightButton:
      return 1;
    case Qt::MiddleButton:
      return 2;
    default:
      return -1;
  }
}

const char* clipboard_text(void*) {
  static QByteArray text;  // ImGui copies the string before the next call
  text = QGuiApplication::clipboard()->text().toUtf8();
  return text.constData();
}

void set_clipboard_text(void*, const char* text) {
  QGuiApplication::clipboard()->setText(QString::fromUtf8(text));
}

}  // namespace

ImGuiHost::ImGuiHost(QWidget* parent) : QOpenGLWidget(parent) {
  setMouseTracking(true);
  setFocusPolicy(Qt::StrongFocus);
  setAttribute(Qt::WA_InputMethodEnabled, false);
  ImGuiContext* previous = ImGui::GetCurrentContext();
  context_ = ImGui::CreateContext();
  ImGui::SetCurrentContext(context_);
  ImGuiIO& io = ImGui::GetIO();
  io.IniFilename = nullptr;  // no imgui.ini beside the user's files
  io.LogFilename = nullptr;
  for (int k = 0; k < ImGuiKey_COUNT; ++k)
    io.KeyMap[k] = k;
  io.GetClipboardTextFn = clipboard_text;
  io.SetClipboardTextFn = set_clipboard_text;
  ImGui::StyleColorsDark();
  ImGui::SetCurrentContext(previous);
  timer_.setTimerType(Qt::PreciseTimer);
  connect(&timer_, &QTimer::timeout, this, qOverload<>(&QWidget::update));
}

ImGuiHost::~ImGuiHost() {
  QObject::disconnect(context_gone_);  // QOpenGLWidget's destructor destroys the context after this one
  if (gl_ready_) {
    makeCurrent();
    ImGui::SetCurrentContext(context_);
    ImGui_ImplOpenGL3_Shutdown();
    gl_ready_ = false;
    doneCurrent();
  }
  if (ImGui::GetCurrentContext() == context_) ImGui::SetCurrentContext(nullptr);
  ImGui::DestroyContext(context_);
}

void ImGuiHost::make_current_context() const {
  ImGui::SetCurrentContext(context_);
}

void ImGuiHost::set_frame_interval(int ms) {
  interval_ms_ = std::max(0, ms);
  timer_.stop();
  if (interval_ms_ > 0 && isVisible()) timer_.start(interval_ms_);
}

void ImGuiHost::set_font_scale(float scale) {
  font_scale_ = std::clamp(scale, 0.5f, 4.0f);
  update();
}

void ImGuiHost::showEvent(QShowEvent* event) {
  QOpenGLWidget::showEvent(event);
  if (interval_ms_ > 0) timer_.start(interval_ms_);
}

void ImGuiHost::hideEvent(QHideEvent* event) {
  timer_.stop();
  QOpenGLWidget::hideEvent(event);
}

void ImGuiHost::initializeGL() {
  make_current_context();
  ImGuiIO& io = ImGui::GetIO();
  // The font rasterised at the device's pixel density and drawn scaled back: sharp text on HiDPI screens.
  const float dpr = static_cast<float>(devicePixelRatioF());
  io.Fonts->Clear();
  ImFontConfig font;
  font.SizePixels = 13.0f * dpr;
  io.Fonts->AddFontDefault(&font);
  if (gl_ready_) ImGui_ImplOpenGL3_Shutdown();  // a new GL context (the widget was re-parented)
  const bool es = QOpenGLContext::currentContext()->isOpenGLES();
  gl_ready_ = ImGui_ImplOpenGL3_Init(es ? "#version 300 es" : "#version 130");
  QObject::disconnect(context_gone_);
  context_gone_ = connect(context(), &QOpenGLContext::aboutToBeDestroyed, this, [this] {
    if (!gl_ready_) return;
    makeCurrent();
    ImGui::SetCurrentContext(context_);
    ImGui_ImplOpenGL3_Shutdown();
    gl_ready_ = false;
    doneCurrent();
  });
}

void ImGuiHost::resizeGL(int, int) {
  update();
}

void ImGuiHost::draw_frame() {
  if (draw_) draw_();
}

void ImGuiHost::paintGL() {
  if (!gl_ready_) return;
  QElapsedTimer clock;
  clock.start();
  make_current_context();
  ImGuiIO& io = ImGui::GetIO();
  const float dpr = static_cast<float>(devicePixelRatioF());
  io.DisplaySize = ImVec2(static_cast<float>(width()), static_cast<float>(height()));
  io.DisplayFramebufferScale = ImVec2(dpr, dpr);
  io.FontGlobalScale = font_scale_ / dpr;  // the atlas is rasterised at the device's density
  static QElapsedTimer since_last;         // shared by hosts: only the delta matters
  const double dt = since_last.isValid() ? since_last.restart() / 1000.0 : 1.0 / 60.0;
  if (!since_last.isValid()) since_last.start();
  io.DeltaTime = static_cast<float>(std::max(dt, 1e-4));
  feed_input();
  ImGui_ImplOpenGL3_NewFrame();
  ImGui::NewFrame();
  draw_frame();
  ImGui::Render();
  QOpenGLFunctions* gl = QOpenGLContext::currentContext()->functions();
  gl->glViewport(0, 0, static_cast<int>(width() * dpr), static_cast<int>(height() * dpr));
  const ImVec4 bg = ImGui::GetStyle().Colors[ImGuiCol_WindowBg];
  gl->glClearColor(bg.x, bg.y, bg.z, 1.0f);
  gl->glClear(GL_COLOR_BUFFER_BIT);
  ImGui_ImplOpenGL3_RenderDrawData(ImGui::GetDrawData());
  ++frames_;
  last_frame_ms_ = clock.nsecsElapsed() / 1e6;
  if (!queue_.empty()) QMetaObject::invokeMethod(this, qOverload<>(&QWidget::update), Qt::QueuedConnection);
  Q_EMIT frame_drawn();
}

QImage ImGuiHost::render_frame() {
  return grabFramebuffer();  // runs paintGL with the context current
}

void ImGuiHost::push(Input input) {
  queue_.push_back(std::move(input));
  update();
}

void ImGuiHost::feed_input() {
  ImGuiIO& io = ImGui::GetIO();
  bool transition = false;
  while (!queue_.empty()) {
    const Input& e = queue_.front();
    const bool is_transition = e.kind == Input::Button || e.kind == Input::Key || e.kind == Input::ReleaseAll;
    if (is_transition && transition) break;  // the next one waits for the next frame
    io.KeyCtrl = e.modifiers.testFlag(Qt::ControlModifier);
    io.KeyShift = e.modifiers.testFlag(Qt::ShiftModifier);
    io.KeyAlt = e.modifiers.testFlag(Qt::AltModifier);
    io.KeySuper = e.modifiers.testFlag(Qt::MetaModifier);
    switch (e.kind) {
      case Input::Move:
        io.MousePos = ImVec2(static_cast<float>(e.pos.x()), static_cast<float>(e.pos.y()));
        break;
      case Input::Button:
        io.MousePos = ImVec2(static_cast<float>(e.pos.x()), static_cast<float>(e.pos.y()));
        io.MouseDown[e.index] = e.down;
        break;
      case Input::Wheel:
        io.MousePos =
            ImVec2(static_cast<float>(e.pos.x()), static_cast<float>(e.pos.y()));  // what it scrolls
        io.MouseWheel += e.wheel_y;
        io.MouseWheelH += e.wheel_x;
        break;
      case Input::Key:
        io.KeysDown[e.index] = e.down;
        break;
      case Input::Text:
        io.AddInputCharactersUTF8(e.text.toUtf8().constData());
        break;
      case Input::Leave:
        io.MousePos = ImVec2(-FLT_MAX, -FLT_MAX);
        break;
      case Input::ReleaseAll:
        for (bool& k : io.KeysDown)
          k = false;
        for (bool& b : io.MouseDown)
          b = false;
        break;
    }
    transition = transition || is_transition;
    queue_.pop_front();
  }
}

void ImGuiHost::mouseMoveEvent(QMouseEvent* event) {
  Input in;
  in.kind = Input::Move;
  in.pos = event->position();
  in.modifiers = event->modifiers();
  push(in);
}

void ImGuiHost::mousePressEvent(QMouseEvent* event) {
  const int b = imgui_button(event->button());
  if (b < 0) return;
  Input in;
  in.kind = Input::Button;
  in.pos = event->position();
  in.index = b;
  in.down = true;
  in.modifiers = event->modifiers();
  push(in);
}

void ImGuiHost::mouseDoubleClickEvent(QMouseEvent* event) {
  mousePressEvent(event);  // ImGui detects double clicks itself from press timing
}

void ImGuiHost::mouseReleaseEvent(QMouseEvent* event) {
  const int b = imgui_button(event->button());
  if (b < 0) return;
  Input in;
  in.kind = Input::Button;
  in.pos = event->position();
  in.index = b;
  in.down = false;
  in.modifiers = event->modifiers();
  push(in);
}

void ImGuiHost::wheelEvent(QWheelEvent* event) {
  Input in;
  in.kind = Input::Wheel;
  in.pos = event->position();
  in.wheel_x = static_cast<float>(event->angleDelta().x() / 120.0);
  in.wheel_y = static_cast<float>(event->angleDelta().y() / 120.0);
  in.modifiers = event->modifiers();
  push(in);
  event->accept();
}

void ImGuiHost::keyPressEvent(QKeyEvent* event) {
  const int k = imgui_key(event->key());
  if (k >= 0) {
    Input in;
    in.kind = Input::Key;
    in.index = k;
    in.down = true;
    in.modifiers = event->modifiers();
    push(in);
  }
  const QString text = event->text();
  const bool printable = !text.isEmpty() && text.at(0).isPrint();
  if (printable && !(event->modifiers() & (Qt::ControlModifier | Qt::MetaModifier))) {
    Input in;
    in.kind = Input::Text;
    in.text = text;
    in.modifiers = event->modifiers();
    push(in);
  }
  event->accept();
}

void ImGuiHost::keyReleaseEvent(QKeyEvent* event) {
  const int k = imgui_key(event->key());
  if (k < 0 || event->isAutoRepeat()) return;
  Input in;
  in.kind = Input::Key;
  in.index = k;
  in.down = false;
  in.modifiers = event->modifiers();
  push(in);
}

void ImGuiHost::leaveEvent(QEvent* event) {
  Input in;
  in.kind = Input::Leave;
  push(in);
  QOpenGLWidget::leaveEvent(event);
}

void ImGuiHost::focusOutEvent(QFocusEvent* event) {
  // Keys and buttons held while focus leaves would stay down in ImGui: release them.
  Input in;
  in.kind = Input::ReleaseAll;
  push(in);
  QOpenGLWidget::focusOutEvent(event);
}

bool ImGuiHost::event(QEvent* event) {
  // Tab and Backtab go to ImGui (field to field), not to Qt's focus chain.
  if (event->type() == QEvent::KeyPress) {
    auto* key = static_cast<QKeyEvent*>(event);
    if (key->key() == Qt::Key_Tab || key->key() == Qt::Key_Backtab) {
      keyPressEvent(key);
      return true;
    }
  }
  return QOpenGLWidget::event(event);
}

}  // namespace hedgelab::views
