#include "sessions/session_recorder.h"

#include <algorithm>
#include <fstream>

#include "core/common/error.h"
#include "core/data/sha256.h"
#include "core/distill/stages.h"

namespace hedgelab::sessions {

SessionLayout layout_for(const distill::RecipeConfig& recipe, const models::GptNeoXConfig& teacher,
                         int64_t probe_tokens) {
  SessionLayout l;
  l.layers = teacher.num_layers;
  l.heads = teacher.num_heads;
  l.probe_tokens = recipe.data.probe_every > 0 ? probe_tokens : 0;
  l.head_size = teacher.head_size();
  l.feature_dim = distill::hedgehog_options(recipe).resolved_feature_dim(l.head_size);
  l.state_size = 2 * l.feature_dim;
  l.width = teacher.hidden_size;
  l.conv_width = recipe.model.conv ? recipe.model.conv_width : 0;
  l.part_names = standard_part_names(teacher.num_layers);
  return l;
}

SessionRecorder::SessionRecorder(SessionWriter& writer, std::string run, double wall_offset)
    : writer_(writer), run_(std::move(run)), wall_offset_(wall_offset) {}

double SessionRecorder::wall_seconds() const {
  return wall_offset_ + std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
}

void SessionRecorder::on_state(run::RunState from, run::RunState to, const std::string& reason) {
  nlohmann::json detail = {{"run", run_}, {"stage", stage_}, {"reason", reason}};
  using S = run::RunState;
  if (to == S::Running)
    writer_.append_event(from == S::Paused ? "resume" : "start", detail);
  else if (to == S::Paused)
    writer_.append_event(reason == "pause requested" ? "pause" : "error", detail);
  else if (to == S::Failed)
    writer_.append_event("error", detail);
  else if (to == S::Finished)
    writer_.append_event(reason == "done" ? "finish" : "stop", detail);
  writer_.flush();
}

void SessionRecorder::on_stage_start(const std::string& stage, int64_t) {
  stage_ = stage;
}

void SessionRecorder::on_step(const std::string& stage, const run::StepReport& report) {
  writer_.append_step(run_, stage, report, wall_seconds());
  writer_.flush();
}

void SessionRecorder::on_eval(const std::string& stage, const run::EvalReport& report) {
  writer_.append_eval(run_, stage, report);
}

void SessionRecorder::on_probe(const snapshot::ProbeSnapshot& snapshot) {
  writer_.append_probe(snapshot);
}

void SessionRecorder::on_checkpoint(const run::Checkpoint& c, const std::string& why) {
  CheckpointRecord r;
  r.run = c.run;
  r.stage = c.stage;
  r.step = c.step;
  r.tensors = c.tensors;
  r.meta = c.meta;
  r.meta["why"] = why;
  r.meta["wall_seconds"] = wall_seconds();
  last_checkpoint_ = writer_.write_checkpoint(r).dir;
}

void SessionRecorder::on_finished(const run::RunSummary& summary) {
  writer_.set_summary({summary});
}

void SessionRecorder::on_knobs(const std::string& stage, int64_t step, const snapshot::KnobEdit& k) {
  nlohmann::json detail = {{"run", run_}, {"stage", stage}, {"step", step}};
  if (k.lr) detail["lr"] = *k.lr;
  if (k.ce_weight) detail["ce_weight"] = *k.ce_weight;
  if (k.kd_weight) detail["kd_weight"] = *k.kd_weight;
  if (k.align_weight) detail["align_weight"] = *k.align_weight;
  if (k.kd_temperature) detail["kd_temperature"] = *k.kd_temperature;
  if (k.probe_every) detail["probe_every"] = *k.probe_every;
  writer_.append_event("knob", detail);
  writer_.flush();
}

void SessionRecorder::on_notice(const std::string& stage, const std::string& text) {
  writer_.append_event("notice", {{"run", run_}, {"stage", stage}, {"text", text}});
  writer_.flush();
}

}  // namespace hedgelab::sessions

namespace hedgelab::sessions {

Provenance provenance_for(const distill::RecipeConfig& recipe, const std::filesystem::path& teacher_dir,
                          const std::vector<std::filesystem::path>& weight_files,
                          const data::TokenCorpus& corpus) {
  Provenance p = make_provenance();
  p.device = recipe.device;
  p.recipe = recipe.to_json();
  p.teacher_dir = teacher_dir.string();
  data::Sha256 weights;
  std::vector<char> buf(1 << 20);
  for (const auto& f : weight_files) {
    std::ifstream in(f, std::ios::binary);
    if (!in) throw Error(f.string(), "cannot be read to hash the teacher's weights");
    while (in) {
      in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
      weights.update(buf.data(), static_cast<size_t>(in.gcount()));
    }
  }
  const auto wd = weights.digest();
  p.teacher_hash = "sha256:" + data::to_hex(wd.data(), wd.size());
  p.corpus_path = corpus.source().string();
  data::Sha256 tokens;
  const data::TokenView all = corpus.all();
  std::vector<int64_t> chunk(1 << 16);
  for (int64_t at = 0; at < all.size(); at += static_cast<int64_t>(chunk.size())) {
    const int64_t n = std::min<int64_t>(static_cast<int64_t>(chunk.size()), all.size() - at);
    all.copy_to(at, n, chunk.data());
    for (int64_t i = 0; i < n; ++i) {
      const int32_t id = static_cast<int32_t>(chunk[static_cast<size_t>(i)]);
      tokens.update(&id, sizeof id);
    }
  }
  const auto td = tokens.digest();
  p.corpus_hash = "sha256-tokens:" + data::to_hex(td.data(), td.size());
  p.seed = static_cast<uint64_t>(recipe.seed);
  return p;
}

}  // namespace hedgelab::sessions
