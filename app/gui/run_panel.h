// The run panel: teacher folder (or the built-in demo teacher), corpus (or the built-in one), preset, the
// editable recipe fields with inline validation, device and threads, the sessions folder, and Start / Pause
// / Stop. A field the recipe refuses is marked and its message shown under the form; Start stays disabled
// until the recipe is valid.
#pragma once

#include <QWidget>
#include <map>
#include <optional>

#include "core/distill/recipe.h"

class QCheckBox;
class QComboBox;
class QFormLayout;
class QLabel;
class QLineEdit;
class QPushButton;
class QSpinBox;
class QProgressBar;

namespace hedgelab::gui {

struct RunProgress;

class RunPanel : public QWidget {
  Q_OBJECT

 public:
  explicit RunPanel(bool cuda_available, QWidget* parent = nullptr);

  // The recipe the form describes, or nullopt with error() set.
  std::optional<distill::RecipeConfig> recipe() const;
  QString error() const { return error_; }
  QString sessions_folder() const;

  void set_preset(const QString& name);
  void set_teacher(const QString& dir);  // empty = the demo teacher
  void set_corpus(const QString& path);  // empty = the built-in corpus
  void set_sessions_folder(const QString& dir);
  // Sets a field by its recipe path ("stage1.tokens"); for tests and the Demo entry.
  bool set_field(const QString& path, const QString& value);
  QLineEdit* field(const QString& path) const;

  // The buttons follow the run's state.
  void set_run_controls(bool can_start, bool can_pause, bool can_resume, bool can_stop);
  void show_progress(const RunProgress& progress, const QString& state);
  void show_status(const QString& text);

  // Remembered between launches.
  void save_settings() const;
  void load_settings();

 Q_SIGNALS:
  void start_clicked();
  void pause_clicked();
  void stop_clicked();
  void recipe_changed(bool valid);

 private:
  void revalidate();
  distill::RecipeConfig build_recipe() const;  // throws hedgelab::Error naming the field
  void load_preset_fields();
  QLineEdit* add_field(QFormLayout* form, const QString& path, const QString& label, const QString& tooltip);

  QComboBox* preset_ = nullptr;
  QLineEdit* teacher_ = nullptr;
  QLineEdit* corpus_ = nullptr;
  QLineEdit* sessions_ = nullptr;
  QComboBox* device_ = nullptr;
  QComboBox* precision_ = nullptr;
  QCheckBox* checkpointing_ = nullptr;
  QSpinBox* threads_ = nullptr;
  std::map<QString, QLineEdit*> fields_;  // recipe path → editor
  QLabel* error_label_ = nullptr;
  QLabel* summary_ = nullptr;
  QPushButton *start_ = nullptr, *pause_ = nullptr, *stop_ = nullptr;
  QLabel* stage_ = nullptr;
  QLabel* numbers_ = nullptr;
  QProgressBar* bar_ = nullptr;
  QString error_;
  bool can_start_ = true;
  bool loading_preset_ = false;
};

// "1h 02m", "3m 20s", "45s".
QString format_duration(double seconds);

}  // namespace hedgelab::gui
