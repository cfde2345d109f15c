#include "app/launch/session_run.h"

#include <spdlog/spdlog.h>

#include <ctime>

#include "core/common/error.h"
#include "core/util/atomic_file.h"
#include "sessions/session_reader.h"

namespace hedgelab::launch {

std::filesystem::path default_session_path(const std::string& recipe_name,
                                           const std::filesystem::path& folder) {
  const std::time_t now = std::time(nullptr);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", std::localtime(&now));
  std::filesystem::path p = folder / (recipe_name + "-" + stamp + ".h5");
  for (int i = 2; std::filesystem::exists(p); ++i)
    p = folder / (recipe_name + "-" + stamp + "-" + std::to_string(i) + ".h5");
  return p;
}

std::filesystem::path continuation_path(const std::filesystem::path& from) {
  const auto dir = from.parent_path();
  const std::string stem = from.stem().string();
  std::filesystem::path p = dir / (stem + "-resumed.h5");
  for (int i = 2; std::filesystem::exists(p); ++i)
    p = dir / (stem + "-resumed-" + std::to_string(i) + ".h5");
  return p;
}

distill::RecipeConfig recipe_of_session(const std::filesystem::path& session) {
  auto reader = sessions::SessionReader::open(session);
  return distill::RecipeConfig::from_json(reader.provenance().recipe,
                                          session.string() + ": provenance recipe");
}

run::ProbeText probe_text_of(const io::Tokenizer& tok, const std::string& text) {
  run::ProbeText p;
  for (auto id : tok.encode(text)) {
    p.ids.push_back(id);
    p.pieces.push_back(tok.decode({id}));
  }
  return p;
}

void check_writable_folder(const std::filesystem::path& dir) {
  // Fail before hours of training, not after: the folder must be creatable and writable.
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw Error(dir.string(), "cannot create the output folder: " + ec.message());
  const auto probe = dir / ".hedgelab-write-test";
  util::write_file_atomically(probe, std::string("ok"));
  std::filesystem::remove(probe, ec);
}

SessionRun::SessionRun(RunRequest request, run::RunObserver* observer) {
  recipe_ = std::move(request.recipe);
  recipe_.validate();
  if (!request.resume_from.empty()) {
    auto reader = sessions::SessionReader::open(request.resume_from);
    resume_point_ = sessions::load_last_complete_checkpoint(reader, request.run_name);
    if (!resume_point_)
      throw Error(request.resume_from.string(),
                  "has no complete checkpoint to resume from (a run writes one every data.checkpoint_every "
                  "steps and when it pauses or stops)");
    spdlog::info("resuming {} from its {} checkpoint at step {}", request.resume_from.string(),
                 resume_point_->stage, resume_point_->step);
  }
  session_path_ = request.session;
  if (session_path_.empty())
    session_path_ = request.resume_from.empty() ? default_session_path(recipe_.name)
                                                : continuation_path(request.resume_from);
  if (std::filesystem::exists(session_path_))
    throw Error(session_path_.string(),
                "exists already; a session is never overwritten (choose another file)");
  if (session_path_.has_parent_path()) check_writable_folder(session_path_.parent_path());

  teacher_.emplace(load_teacher(recipe_.teacher == "demo" ? "" : recipe_.teacher));
  tokenizer_.emplace(load_tokenizer(teacher_->folder));
  corpus_ = std::make_unique<data::TokenCorpus>(
      load_corpus_with(*tokenizer_, recipe_.corpus == "default" ? "" : recipe_.corpus, request.use_cache,
                       recipe_.data.heldout_fraction));
  const run::ProbeText probe = probe_text_of(*tokenizer_, recipe_.data.probe_text);
  const sessions::Provenance provenance =
      sessions::provenance_for(recipe_, teacher_->dir, teacher_->folder.weight_files(), *corpus_);
  const int64_t probe_tokens = std::min<int64_t>(static_cast<int64_t>(probe.ids.size()),
                                                 teacher_->model->config().max_position_embeddings);

  observers_.add(observer);
  run_ = std::make_unique<run::DistillRun>(recipe_, teacher_->model, *corpus_, probe, &observers_,
                                           request.run_name);
  if (resume_point_) {
    run::Checkpoint c{resume_point_->run, resume_point_->stage, resume_point_->step, resume_point_->tensors,
                      resume_point_->meta};
    run_->restore(c);
  }
  // Created once the run has accepted the recipe, teacher, corpus and checkpoint.
  writer_.emplace(sessions::SessionWriter::create(
      session_path_, provenance, sessions::layout_for(recipe_, teacher_->model->config(), probe_tokens)));
  spdlog::info("session {}", session_path_.string());
  const double wall_before = resume_point_ ? resume_point_->meta.value("wall_seconds", 0.0) : 0.0;
  recorder_ = std::make_unique<sessions::SessionRecorder>(*writer_, request.run_name, wall_before);
  observers_.add(recorder_.get());
  if (resume_point_)
    writer_->append_event("resume_from_checkpoint", {{"session", request.resume_from.string()},
                                                     {"stage", resume_point_->stage},
                                                     {"step", resume_point_->step},
                                                     {"steps_done", run_->steps_done()}});
}

SessionRun::~SessionRun() = default;

run::RunState SessionRun::step(int64_t stop_at_step) {
  const run::RunState state = run_->run(stop_at_step);
  if (state == run::RunState::Finished && !run_->summary().stopped_early) close();
  return state;
}

void SessionRun::close() {
  if (writer_ && !closed_) writer_->close();
  closed_ = true;
}

}  // namespace hedgelab::launch
