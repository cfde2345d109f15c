#include "app/gui/session_document.h"

#include <QFileInfo>

#include "core/distill/recipe.h"

namespace hedgelab::gui {

std::unique_ptr<SessionDocument> SessionDocument::open(const QString& path,
                                                       const std::function<void(int, int)>& progress) {
  auto reader = sessions::SessionReader::open(path.toStdString());
  std::unique_ptr<SessionDocument> doc(new SessionDocument(path, std::move(reader)));
  doc->load(progress);
  return doc;
}

SessionDocument::SessionDocument(QString path, sessions::SessionReader reader)
    : path_(std::move(path)), reader_(std::move(reader)) {}

QString SessionDocument::title() const {
  return QFileInfo(path_).fileName();
}

QString SessionDocument::state_text() const {
  const auto& c = reader_.contents();
  return QString::fromStdString(sessions::to_string(c.state)) + " — " +
         QString::fromStdString(c.state_detail);
}

void SessionDocument::load(const std::function<void(int, int)>& progress) {
  const auto& c = reader_.contents();
  data_.title = title();
  recipe_json_ = QString::fromStdString(c.provenance.recipe.dump(2));
  // The run the views show: the recipe's run ("hedgemamba") when present, else the first recorded.
  run_ = c.runs.empty() ? std::string("hedgemamba") : c.runs.front();
  for (const auto& r : c.runs)
    if (r == "hedgemamba") run_ = r;
  try {
    const auto recipe =
        distill::RecipeConfig::from_json(c.provenance.recipe, path_.toStdString() + ": recipe");
    data_.set_stage_steps(recipe.stage1_steps(), recipe.stage2_steps());
    knobs_.lr = recipe.stage1.lr;
    knobs_.ce_weight = recipe.stage2.ce_weight;
    knobs_.kd_weight = recipe.stage2.kd_weight;
    knobs_.align_weight = recipe.stage2.align_weight;
    knobs_.kd_temperature = recipe.stage2.kd_temperature;
    knobs_.probe_every = recipe.data.probe_every;
    for (const auto& s : c.series)
      if (s.run == run_ && s.stage == "stage2" && s.steps > 0) knobs_.lr = recipe.stage2.lr;
  } catch (const std::exception&) {
    // A recipe this build cannot read: stage 2 then starts after stage 1's recorded steps.
    int64_t s1 = 0;
    for (const auto& s : c.series)
      if (s.run == run_ && s.stage == "stage1") s1 = s.last_step;
    data_.set_stage_steps(s1, 0);
  }
  for (const char* stage : {"stage1", "stage2"}) {
    bool present = false;
    for (const auto& s : c.series)
      present = present || (s.run == run_ && s.stage == stage);
    if (!present) continue;
    for (const auto& step : reader_.steps(run_, stage))
      data_.add_step(stage, step);
    for (const auto& e : reader_.evals(run_, stage))
      data_.add_eval(stage, e);
  }
  const int total = static_cast<int>(c.snapshot_list.size());
  int done = 0;
  for (const auto& info : c.snapshot_list) {
    if (progress) progress(done, total);
    ++done;
    if (info.run != run_) continue;
    views::SnapshotEntry e;
    e.stage = info.stage;
    e.step = info.step;
    e.index = info.index;
    e.x = data_.global_step(info.stage, info.step);
    e.snapshot = std::make_shared<const snapshot::ProbeSnapshot>(reader_.probe(info.index));
    data_.add_snapshot(std::move(e));
  }
  if (progress) progress(total, total);
  data_.set_summary(reader_.summary());
  for (const auto& e : reader_.events()) {
    if (e.kind != "knob" || !e.detail.is_object()) continue;
    const auto& d = e.detail;
    if (d.contains("lr")) knobs_.lr = d["lr"].get<double>();
    if (d.contains("ce_weight")) knobs_.ce_weight = d["ce_weight"].get<double>();
    if (d.contains("kd_weight")) knobs_.kd_weight = d["kd_weight"].get<double>();
    if (d.contains("align_weight")) knobs_.align_weight = d["align_weight"].get<double>();
    if (d.contains("kd_temperature")) knobs_.kd_temperature = d["kd_temperature"].get<double>();
    if (d.contains("probe_every")) knobs_.probe_every = d["probe_every"].get<int64_t>();
  }
  resumable_ = false;
  for (const auto& cp : c.checkpoints)
    resumable_ = resumable_ || (cp.complete && cp.run == run_ && cp.stage != "done");
}

}  // namespace hedgelab::gui
