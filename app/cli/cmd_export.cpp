// export: a session's student as a self-contained folder (config.json + model.safetensors + tokenizer.json,
// docs/student-format.md) that eval and generate load.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "app/cli/args.h"
#include "app/cli/commands.h"
#include "app/cli/loading.h"
#include "core/common/error.h"
#include "core/distill/recipe.h"
#include "core/run/distill_run.h"
#include "core/util/atomic_file.h"
#include "sessions/checkpoints.h"
#include "sessions/session_reader.h"

namespace hedgelab::cli {

int run_export(const Args& args) {
  ArgParser p(
      "export",
      "Write the student of a session as a folder that eval, generate and other tools load:\n"
      "config.json, model.safetensors (float32) and the teacher's tokenizer.json. Takes the session's\n"
      "newest complete checkpoint: the trained student after a finished run, the student in training\n"
      "after a stopped one, the fresh student of stage 1 before stage 2 began.");
  p.required("session", "FILE", "a session written by distill")
      .required("out", "DIR", "the folder to create (must not exist, or be empty)")
      .option("teacher", "DIR", "the teacher folder, when it moved since the run (default: the session's)",
              "")
      .flag("json", "print JSON");
  if (!p.parse(args)) return 0;
  const std::filesystem::path out = p.str("out");
  std::error_code ec;
  if (std::filesystem::exists(out) && !std::filesystem::is_empty(out, ec))
    throw Error(out.string(), "exists and is not empty; export writes a new folder");

  auto reader = sessions::SessionReader::open(p.str("session"));
  const auto recipe =
      distill::RecipeConfig::from_json(reader.provenance().recipe, p.str("session") + ": provenance recipe");
  std::string teacher_dir = p.str("teacher");
  if (teacher_dir.empty()) teacher_dir = recipe.teacher == "demo" ? "" : reader.provenance().teacher_dir;
  auto record = sessions::load_last_complete_checkpoint(reader, "hedgemamba");
  if (!record) throw Error(p.str("session"), "has no complete checkpoint of a hedgemamba run to export");
  auto teacher = load_teacher(teacher_dir);
  auto tok = load_tokenizer(teacher.folder);
  const run::Checkpoint c{record->run, record->stage, record->step, record->tensors, record->meta};
  auto student = run::student_from_checkpoint(c, teacher.model);

  // Written beside the destination, then renamed: a failure leaves no half-written folder behind.
  const std::filesystem::path parent = out.has_parent_path() ? out.parent_path() : std::filesystem::path(".");
  std::filesystem::create_directories(parent, ec);
  if (ec) throw Error(parent.string(), "cannot create the folder: " + ec.message());
  const std::filesystem::path partial =
      parent / ("." + out.filename().string() + ".partial-" + std::to_string(::getpid()));
  try {
    models::save_student(student, partial);
    util::write_file_atomically(partial / "tokenizer.json", tok.to_json_text());
    if (std::filesystem::exists(out)) std::filesystem::remove(out);  // empty, checked above
    std::filesystem::rename(partial, out);
  } catch (const std::filesystem::filesystem_error& e) {
    std::filesystem::remove_all(partial, ec);
    throw Error(out.string(), std::string("cannot be written: ") + e.code().message());
  } catch (...) {
    std::filesystem::remove_all(partial, ec);
    throw;
  }
  const nlohmann::json j = {{"session", p.str("session")},
                            {"out", out.string()},
                            {"stage", c.stage},
                            {"step", c.step},
                            {"teacher", teacher.dir}};
  if (p.enabled("json"))
    std::printf("%s\n", j.dump(2).c_str());
  else
    std::printf("exported the %s student (%s step %lld) of %s to %s\n",
                c.stage == "done"     ? "trained"
                : c.stage == "stage2" ? "in-training"
                                      : "fresh",
                c.stage.c_str(), static_cast<long long>(c.step), p.str("session").c_str(), out.c_str());
  return 0;
}

}  // namespace hedgelab::cli
