#include "app/gui/run_panel.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDir>
#include <QFileDialog>
#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QSettings>
#include <QSpinBox>
#include <QStandardPaths>
#include <QThread>
#include <QVBoxLayout>
#include <cmath>
#include <nlohmann/json.hpp>

#include "app/gui/run_controller.h"
#include "core/common/error.h"

namespace hedgelab::gui {

namespace {

// The editable fields: recipe path, label, tooltip.
struct FieldSpec {
  const char* path;
  const char* label;
  const char* tooltip;
};
const FieldSpec kFields[] = {
    {"stage1.tokens", "Stage-1 tokens", "Token budget of stage 1 (Hedgehog attention transfer); 0 skips it"},
    {"stage2.tokens", "Stage-2 tokens", "Token budget of stage 2 (HedgeMamba end-to-end distillation)"},
    {"stage1.lr", "Stage-1 peak lr", "Peak learning rate of stage 1 (warmup, then cosine)"},
    {"stage2.lr", "Stage-2 peak lr", "Peak learning rate of stage 2"},
    {"data.context", "Context T", "Tokens per training window"},
    {"data.batch_size", "Micro-batch B", "Windows per micro-batch (lower it when memory runs out)"},
    {"data.accumulation", "Accumulation", "Micro-batches per optimizer step"},
    {"stage2.ce_weight", "λ_ce", "Weight of next-token cross-entropy in stage 2"},
    {"stage2.kd_weight", "λ_kd", "Weight of the distillation KL in stage 2"},
    {"stage2.kd_temperature", "KD temperature τ", "Softmax temperature of the distillation KL"},
    {"stage2.align_weight", "λ_align", "Weight of the per-layer cosine alignment in stage 2"},
    {"data.eval_every", "Evaluate every", "Steps between held-out perplexity evaluations"},
    {"data.probe_every", "Probe every",
     "Steps between probe snapshots (attention maps, internals); 0 = none"},
    {"data.checkpoint_every", "Checkpoint every", "Steps between resumable checkpoints"},
    {"data.probe_text", "Probe text", "The text whose attention maps the inspection views show"},
    {"seed", "Seed", "Seed of the batch order"},
};

bool is_integer_path(const QString& path) {
  return path.endsWith("tokens") || path.startsWith("data.") || path == "seed";
}

nlohmann::json value_json(const QString& path, const QString& text) {
  if (path == "data.probe_text") return text.toStdString();
  bool ok = false;
  if (is_integer_path(path)) {
    const qlonglong v = text.trimmed().toLongLong(&ok);
    if (ok) return v;
  } else {
    const double v = text.trimmed().toDouble(&ok);
    if (ok) return v;
  }
  return text.toStdString();  // the recipe names the field and what it expected
}

nlohmann::json nested(const QString& path, nlohmann::json value) {
  const QStringList parts = path.split('.');
  nlohmann::json j = std::move(value);
  for (int i = parts.size() - 1; i >= 0; --i)
    j = nlohmann::json{{parts[i].toStdString(), j}};
  return j;
}

QString field_text(const nlohmann::json& recipe, const QString& path) {
  const nlohmann::json* j = &recipe;
  for (const QString& part : path.split('.')) {
    if (!j->is_object() || !j->contains(part.toStdString())) return {};
    j = &(*j)[part.toStdString()];
  }
  if (j->is_string()) return QString::fromStdString(j->get<std::string>());
  if (j->is_number_integer()) return QString::number(j->get<int64_t>());
  if (j->is_number()) return QString::number(j->get<double>(), 'g', 8);
  return QString::fromStdString(j->dump());
}

}  // namespace

QString format_duration(double s) {
  if (!(s >= 0) || !std::isfinite(s)) return QStringLiteral("–");
  const qint64 t = static_cast<qint64>(std::llround(s));
  if (t >= 3600) return QString("%1h %2m").arg(t / 3600).arg((t % 3600) / 60, 2, 10, QChar('0'));
  if (t >= 60) return QString("%1m %2s").arg(t / 60).arg(t % 60, 2, 10, QChar('0'));
  return QString("%1s").arg(t);
}

RunPanel::RunPanel(bool cuda_available, QWidget* parent) : QWidget(parent) {
  auto* outer = new QVBoxLayout(this);

  auto* source = new QGroupBox(tr("Teacher and data"), this);
  auto* sf = new QFormLayout(source);
  preset_ = new QComboBox(source);
  preset_->setObjectName("preset");
  for (const auto& name : distill::available_presets())
    preset_->addItem(QString::fromStdString(name));
  sf->addRow(tr("Preset"), preset_);
  auto browse_row = [&](QLineEdit*& edit, const QString& name, const QString& placeholder, bool folder) {
    auto* row = new QWidget(source);
    auto* h = new QHBoxLayout(row);
    h->setContentsMargins(0, 0, 0, 0);
    edit = new QLineEdit(row);
    edit->setObjectName(name);
    edit->setPlaceholderText(placeholder);
    auto* browse = new QPushButton(tr("Browse…"), row);
    h->addWidget(edit, 1);
    h->addWidget(browse);
    QLineEdit* target = edit;
    connect(browse, &QPushButton::clicked, this, [this, target, folder] {
      const QString picked =
          folder ? QFileDialog::getExistingDirectory(this, tr("Choose a folder"), target->text())
                 : QFileDialog::getOpenFileName(this, tr("Choose a corpus"), target->text());
      if (!picked.isEmpty()) target->setText(picked);
    });
    connect(edit, &QLineEdit::textChanged, this, [this] { revalidate(); });
    return row;
  };
  sf->addRow(tr("Teacher"), browse_row(teacher_, "teacher", tr("built-in demo teacher"), true));
  sf->addRow(tr("Corpus"), browse_row(corpus_, "corpus", tr("built-in corpus (KJV)"), false));
  sf->addRow(tr("Sessions folder"), browse_row(sessions_, "sessions_folder", tr("default"), true));
  device_ = new QComboBox(source);
  device_->setObjectName("device");
  device_->addItem(tr("CPU"), "cpu");
  device_->addItem(cuda_available ? tr("CUDA") : tr("CUDA (not available)"), "cuda");
  if (!cuda_available) {
    device_->setItemData(1, 0, Qt::UserRole - 1);  // disabled item
    device_->setToolTip(tr("This build's LibTorch has no CUDA device"));
  }
  sf->addRow(tr("Device"), device_);
  precision_ = new QComboBox(source);
  precision_->setObjectName("dtype");
  precision_->addItem(tr("float32"), "float32");
  precision_->addItem(tr("bfloat16 autocast (CUDA)"), "bfloat16");
  precision_->setToolTip(
      tr("bfloat16: matmuls on the GPU's tensor cores in bf16; weights, optimizer state and losses stay "
         "float32"));
  sf->addRow(tr("Precision"), precision_);
  checkpointing_ = new QCheckBox(tr("Recompute blocks in the backward"), source);
  checkpointing_->setObjectName("activation_checkpointing");
  checkpointing_->setToolTip(
      tr("Activation checkpointing: keeps only each block's input, trading one more "
         "forward for memory (for long contexts and large teachers)"));
  sf->addRow(tr("Checkpointing"), checkpointing_);
  threads_ = new QSpinBox(source);
  threads_->setObjectName("threads");
  threads_->setRange(0, 256);
  threads_->setSpecialValueText(tr("recipe / library default"));
  threads_->setToolTip(tr("CPU threads for LibTorch (%1 cores here)").arg(QThread::idealThreadCount()));
  sf->addRow(tr("Threads"), threads_);
  outer->addWidget(source);

  auto* recipe_box = new QGroupBox(tr("Recipe"), this);
  auto* rf = new QFormLayout(recipe_box);
  for (const auto& f : kFields)
    add_field(rf, f.path, tr(f.label), tr(f.tooltip));
  summary_ = new QLabel(recipe_box);
  summary_->setWordWrap(true);
  summary_->setObjectName("recipe_summary");
  rf->addRow(summary_);
  outer->addWidget(recipe_box);

  error_label_ = new QLabel(this);
  error_label_->setObjectName("recipe_error");
  error_label_->setWordWrap(true);
  error_label_->setStyleSheet("color: #e05252;");
  error_label_->setVisible(false);
  outer->addWidget(error_label_);

  auto* buttons = new QHBoxLayout;
  start_ = new QPushButton(tr("Start"), this);
  start_->setObjectName("start");
  start_->setToolTip(tr("Start a run with this recipe (Ctrl+R)"));
  pause_ = new QPushButton(tr("Pause"), this);
  pause_->setObjectName("pause");
  pause_->setToolTip(tr("Pause or resume between steps (Space)"));
  stop_ = new QPushButton(tr("Stop"), this);
  stop_->setObjectName("stop");
  stop_->setToolTip(tr("Stop with a resumable checkpoint"));
  buttons->addWidget(start_);
  buttons->addWidget(pause_);
  buttons->addWidget(stop_);
  outer->addLayout(buttons);
  connect(start_, &QPushButton::clicked, this, &RunPanel::start_clicked);
  connect(pause_, &QPushButton::clicked, this, &RunPanel::pause_clicked);
  connect(stop_, &QPushButton::clicked, this, &RunPanel::stop_clicked);

  auto* progress = new QGroupBox(tr("Progress"), this);
  auto* pl = new QVBoxLayout(progress);
  stage_ = new QLabel(tr("No run yet."), progress);
  stage_->setObjectName("progress_stage");
  bar_ = new QProgressBar(progress);
  bar_->setObjectName("progress_bar");
  bar_->setRange(0, 1000);
  bar_->setValue(0);
  numbers_ = new QLabel(progress);
  numbers_->setObjectName("progress_numbers");
  pl->addWidget(stage_);
  pl->addWidget(bar_);
  pl->addWidget(numbers_);
  outer->addWidget(progress);
  outer->addStretch(1);

  connect(preset_, &QComboBox::currentTextChanged, this, [this] { load_preset_fields(); });
  connect(device_, &QComboBox::currentIndexChanged, this, [this] {
    // bf16 is CUDA autocast: a run moved to the CPU computes in float32.
    if (device_->currentData().toString() == "cpu")
      precision_->setCurrentIndex(precision_->findData("float32"));
    revalidate();
  });
  connect(precision_, &QComboBox::currentIndexChanged, this, [this] { revalidate(); });
  connect(checkpointing_, &QCheckBox::toggled, this, [this] { revalidate(); });
  connect(threads_, &QSpinBox::valueChanged, this, [this] { revalidate(); });
  const int demo = preset_->findText("demo");
  if (demo >= 0) preset_->setCurrentIndex(demo);
  load_preset_fields();
  set_run_controls(true, false, false, false);
}

QLineEdit* RunPanel::add_field(QFormLayout* form, const QString& path, const QString& label,
                               const QString& tooltip) {
  auto* edit = new QLineEdit(this);
  edit->setObjectName(path);
  edit->setToolTip(tooltip + " (" + path + ")");
  form->addRow(label, edit);
  fields_[path] = edit;
  connect(edit, &QLineEdit::textChanged, this, [this] { revalidate(); });
  return edit;
}

QLineEdit* RunPanel::field(const QString& path) const {
  auto it = fields_.find(path);
  return it == fields_.end() ? nullptr : it->second;
}

void RunPanel::load_preset_fields() {
  loading_preset_ = true;
  try {
    const auto preset = distill::load_preset(preset_->currentText().toStdString());
    const nlohmann::json j = preset.to_json();
    for (auto& [path, edit] : fields_)
      edit->setText(field_text(j, path));
    threads_->setValue(static_cast<int>(preset.threads));
    const int d = device_->findData(QString::fromStdString(preset.device));
    if (d >= 0) device_->setCurrentIndex(d);
    const int p = precision_->findData(QString::fromStdString(preset.dtype));
    if (p >= 0) precision_->setCurrentIndex(p);
    checkpointing_->setChecked(preset.activation_checkpointing);
  } catch (const std::exception& e) {
    error_ = QString::fromUtf8(e.what());
  }
  loading_preset_ = false;
  revalidate();
}

distill::RecipeConfig RunPanel::build_recipe() const {
  distill::RecipeConfig r = distill::load_preset(preset_->currentText().toStdString());
  nlohmann::json overrides = nlohmann::json::object();
  const QString teacher = teacher_->text().trimmed(), corpus = corpus_->text().trimmed();
  overrides["teacher"] = teacher.isEmpty() ? "demo" : teacher.toStdString();
  overrides["corpus"] = corpus.isEmpty() ? "default" : corpus.toStdString();
  overrides["device"] = device_->currentData().toString().toStdString();
  overrides["dtype"] = precision_->currentData().toString().toStdString();
  overrides["activation_checkpointing"] = checkpointing_->isChecked();
  overrides["threads"] = threads_->value();
  for (const auto& [path, edit] : fields_)
    overrides.merge_patch(nested(path, value_json(path, edit->text())));
  distill::apply_overrides(r, overrides, "run panel");
  if (r.stage1_steps() + r.stage2_steps() == 0)
    throw Error("run panel", "stage1.tokens and stage2.tokens: expected a budget > 0 for at least one stage");
  return r;
}

std::optional<distill::RecipeConfig> RunPanel::recipe() const {
  try {
    return build_recipe();
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

void RunPanel::revalidate() {
  if (loading_preset_) return;
  QString message;
  std::optional<distill::RecipeConfig> r;
  try {
    r = build_recipe();
  } catch (const std::exception& e) {
    message = QString::fromUtf8(e.what());
  }
  // Mark the field the message names.
  for (auto& [path, edit] : fields_) {
    const bool bad = !message.isEmpty() && message.contains(path);
    edit->setStyleSheet(bad ? "border: 1px solid #e05252;" : "");
  }
  error_ = message;
  error_label_->setText(message);
  error_label_->setVisible(!message.isEmpty());
  if (r)
    summary_->setText(tr("%1 steps of stage 1 and %2 of stage 2, %3 tokens per step.")
                          .arg(r->stage1_steps())
                          .arg(r->stage2_steps())
                          .arg(r->tokens_per_step()));
  start_->setEnabled(can_start_ && r.has_value());
  Q_EMIT recipe_changed(r.has_value());
}

QString RunPanel::sessions_folder() const {
  const QString s = sessions_->text().trimmed();
  if (!s.isEmpty()) return s;
  return QDir(QStandardPaths::writableLocation(QStandardPaths::AppDataLocation)).filePath("runs");
}

void RunPanel::set_preset(const QString& name) {
  const int i = preset_->findText(name);
  if (i >= 0) preset_->setCurrentIndex(i);
}

void RunPanel::set_teacher(const QString& dir) {
  teacher_->setText(dir);
}

void RunPanel::set_corpus(const QString& path) {
  corpus_->setText(path);
}

void RunPanel::set_sessions_folder(const QString& dir) {
  sessions_->setText(dir);
}

bool RunPanel::set_field(const QString& path, const QString& value) {
  QLineEdit* e = field(path);
  if (!e) return false;
  e->setText(value);
  return true;
}

void RunPanel::set_run_controls(bool can_start, bool can_pause, bool can_resume, bool can_stop) {
  can_start_ = can_start;
  start_->setEnabled(can_start && error_.isEmpty());
  pause_->setEnabled(can_pause || can_resume);
  pause_->setText(can_resume ? tr("Resume") : tr("Pause"));
  stop_->setEnabled(can_stop);
  for (auto* w : std::initializer_list<QWidget*>{preset_, teacher_, corpus_, sessions_, device_, precision_,
                                                 checkpointing_, threads_})
    w->setEnabled(can_start);
  for (auto& [path, edit] : fields_)
    edit->setEnabled(can_start);
}

void RunPanel::show_progress(const RunProgress& p, const QString& state) {
  stage_->setText(p.stage.isEmpty()
                      ? state
                      : tr("%1 — %2, step %3 of %4").arg(state, p.stage).arg(p.step).arg(p.stage_steps));
  bar_->setValue(p.total_steps > 0 ? static_cast<int>(1000.0 * p.steps_done / p.total_steps) : 0);
  bar_->setFormat(p.total_steps > 0 ? QString("%1 / %2 steps").arg(p.steps_done).arg(p.total_steps)
                                    : QString());
  numbers_->setText(tr("loss %1 · %2 tokens/s · ETA %3")
                        .arg(p.loss, 0, 'f', 4)
                        .arg(p.tokens_per_second, 0, 'f', 0)
                        .arg(format_duration(p.eta_seconds)));
}

void RunPanel::show_status(const QString& text) {
  stage_->setText(text);
}

void RunPanel::save_settings() const {
  QSettings s;
  s.beginGroup("run_panel");
  s.setValue("preset", preset_->currentText());
  s.setValue("teacher", teacher_->text());
  s.setValue("corpus", corpus_->text());
  s.setValue("sessions_folder", sessions_->text());
  s.setValue("device", device_->currentData());
  s.setValue("dtype", precision_->currentData());
  s.setValue("activation_checkpointing", checkpointing_->isChecked());
  s.setValue("threads", threads_->value());
  s.endGroup();
}

void RunPanel::load_settings() {
  QSettings s;
  s.beginGroup("run_panel");
  if (s.contains("preset")) set_preset(s.value("preset").toString());
  teacher_->setText(s.value("teacher").toString());
  corpus_->setText(s.value("corpus").toString());
  sessions_->setText(s.value("sessions_folder").toString());
  const int d = device_->findData(s.value("device", "cpu"));
  if (d >= 0 && device_->itemData(d, Qt::UserRole - 1) != 0) device_->setCurrentIndex(d);
  const int p = precision_->findData(s.value("dtype", "float32"));
  if (p >= 0) precision_->setCurrentIndex(p);
  checkpointing_->setChecked(s.value("activation_checkpointing", false).toBool());
  threads_->setValue(s.value("threads", threads_->value()).toInt());
  s.endGroup();
  revalidate();
}

}  // namespace hedgelab::gui
