// One recipe run recorded in a session, prepared the same way for hedgelab-cli distill and the GUI's worker:
// the teacher, tokenizer and corpus loaded, the probe text tokenized, the DistillRun built (and restored from
// a session's last complete checkpoint when resuming), and the session file created last — so a refused
// request (bad teacher, bad recipe, a session path that exists) leaves no file behind.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "app/launch/loading.h"
#include "core/distill/recipe.h"
#include "core/run/distill_run.h"
#include "sessions/checkpoints.h"
#include "sessions/session_recorder.h"
#include "sessions/session_writer.h"

namespace hedgelab::launch {

struct RunRequest {
  distill::RecipeConfig recipe;       // resuming: the session's (recipe_of_session), teacher/corpus may move
  std::filesystem::path session;      // where the session goes; empty = default_session_path / continuation
  std::filesystem::path resume_from;  // a session to continue from its last complete checkpoint
  std::string run_name = "hedgemamba";
  bool use_cache = true;  // the corpus's tokenization cache
};

class SessionRun {
 public:
  // `observer` (may be null) hears the run's reports before the session recorder does. Throws
  // hedgelab::Error naming the file or field at fault; nothing is created then.
  SessionRun(RunRequest request, run::RunObserver* observer);
  ~SessionRun();
  SessionRun(const SessionRun&) = delete;
  SessionRun& operator=(const SessionRun&) = delete;

  run::DistillRun& run() { return *run_; }
  const run::DistillRun& run() const { return *run_; }
  const distill::RecipeConfig& recipe() const { return recipe_; }
  const std::filesystem::path& session_path() const { return session_path_; }
  const io::Tokenizer& tokenizer() const { return *tokenizer_; }
  const LoadedTeacher& teacher() const { return *teacher_; }
  sessions::SessionWriter& writer() { return *writer_; }
  const sessions::SessionRecorder& recorder() const { return *recorder_; }
  bool resumed() const { return resume_point_.has_value(); }

  // Runs until finished, paused, stopped or `stop_at_step` total steps (DistillRun::run). A finished run's
  // session is closed; a paused or stopped one stays open for more (or is left for --resume).
  run::RunState step(int64_t stop_at_step = 0);
  // Closes the session file (a stopped run: the file keeps its checkpoints for a later resume).
  void close();

 private:
  distill::RecipeConfig recipe_;
  std::filesystem::path session_path_;
  std::optional<LoadedTeacher> teacher_;
  std::optional<io::Tokenizer> tokenizer_;
  std::unique_ptr<data::TokenCorpus> corpus_;
  std::optional<sessions::CheckpointRecord> resume_point_;
  run::ObserverList observers_;
  std::unique_ptr<run::DistillRun> run_;
  std::optional<sessions::SessionWriter> writer_;
  std::unique_ptr<sessions::SessionRecorder> recorder_;
  bool closed_ = false;
};

// runs/<recipe>-<local time>.h5 under `folder` (a numbered suffix when taken).
std::filesystem::path default_session_path(const std::string& recipe_name,
                                           const std::filesystem::path& folder = "runs");
// FILE.h5 → FILE-resumed.h5, FILE-resumed-2.h5, ...
std::filesystem::path continuation_path(const std::filesystem::path& from);
// The recipe a session ran (its provenance), for resuming and for comparing recipes.
distill::RecipeConfig recipe_of_session(const std::filesystem::path& session);
// The probe text as ids and decoded pieces.
run::ProbeText probe_text_of(const io::Tokenizer& tokenizer, const std::string& text);
// Creates `dir` if needed and checks a file can be written there; Error naming the folder otherwise.
void check_writable_folder(const std::filesystem::path& dir);

}  // namespace hedgelab::launch
