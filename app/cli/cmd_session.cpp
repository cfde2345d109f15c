// session: look into a session file (docs/session-format.md) without the GUI. `show` lists what it holds and
// how its writer left it; `metrics` prints one metric over steps.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "app/cli/args.h"
#include "app/cli/commands.h"
#include "core/common/error.h"
#include "sessions/session_reader.h"

namespace hedgelab::cli {

namespace {

const char* kUsage =
    "Usage: hedgelab-cli session show FILE [--json]\n"
    "       hedgelab-cli session metrics FILE --name NAME [--run R] [--stage S] [--csv]\n\n"
    "Look into a session (.h5) written by distill: also while it is being written, or after its writer "
    "died.\n"
    "'<subcommand> --help' describes the options.\n";

std::string number(double v) {
  char text[64];
  std::snprintf(text, sizeof text, "%.6g", v);
  return text;
}

// The shortest decimal that reads back as the same double.
std::string exact(double v) {
  char text[64];
  for (int digits = 15; digits <= 17; ++digits) {
    std::snprintf(text, sizeof text, "%.*g", digits, v);
    if (std::strtod(text, nullptr) == v) break;
  }
  return text;
}

std::string or_dash(const std::string& s) {
  return s.empty() ? "-" : s;
}

nlohmann::json to_json(const sessions::SessionContents& c, const std::vector<sessions::Event>& events) {
  const sessions::Provenance& p = c.provenance;
  nlohmann::json j = {{"file", c.path.string()},
                      {"schema_version", c.schema_version},
                      {"session_id", c.session_id},
                      {"created", c.created},
                      {"state", sessions::to_string(c.state)},
                      {"state_detail", c.state_detail},
                      {"writer", {{"host", c.writer_host}, {"pid", c.writer_pid}}},
                      {"commits", c.flushes},
                      {"last_commit", sessions::iso8601_utc(c.last_flush_time)},
                      {"provenance",
                       {{"app_version", p.app_version},
                        {"torch_version", p.torch_version},
                        {"hdf5_version", p.hdf5_version},
                        {"device", p.device},
                        {"teacher_dir", p.teacher_dir},
                        {"teacher_hash", p.teacher_hash},
                        {"corpus_path", p.corpus_path},
                        {"corpus_hash", p.corpus_hash},
                        {"seed", p.seed},
                        {"start_time", p.start_time},
                        {"recipe", p.recipe}}},
                      {"layout",
                       {{"layers", c.layout.layers},
                        {"heads", c.layout.heads},
                        {"probe_tokens", c.layout.probe_tokens},
                        {"feature_dim", c.layout.feature_dim},
                        {"head_size", c.layout.head_size},
                        {"state_size", c.layout.state_size},
                        {"width", c.layout.width},
                        {"conv_width", c.layout.conv_width},
                        {"part_names", c.layout.part_names}}},
                      {"runs", c.runs},
                      {"counts",
                       {{"steps", c.steps},
                        {"evals", c.evals},
                        {"events", c.events},
                        {"snapshots", c.snapshots},
                        {"summary_rows", c.summary_rows},
                        {"checkpoint_records", c.checkpoint_records}}}};
  nlohmann::json series = nlohmann::json::array();
  for (const auto& s : c.series) {
    nlohmann::json last = {{"step", s.last.step},
                           {"lr", s.last.lr},
                           {"total", s.last.total},
                           {"grad_norm", s.last.grad_norm},
                           {"tokens_seen", s.last.tokens_seen},
                           {"tokens_per_second", s.last.tokens_per_second}};
    for (const auto& [name, value] : s.last.parts)
      last["parts"][name] = value;
    series.push_back({{"run", s.run},
                      {"stage", s.stage},
                      {"steps", s.steps},
                      {"first_step", s.first_step},
                      {"last_step", s.last_step},
                      {"metrics", s.metrics},
                      {"last", s.steps ? last : nlohmann::json(nullptr)},
                      {"evals", s.evals},
                      {"eval_metrics", s.eval_metrics},
                      {"snapshots", s.probes}});
  }
  j["series"] = series;
  nlohmann::json snaps = nlohmann::json::array();
  for (const auto& s : c.snapshot_list)
    snaps.push_back({{"index", s.index},
                     {"run", s.run},
                     {"stage", s.stage},
                     {"step", s.step},
                     {"tokens_seen", s.tokens_seen},
                     {"mixers", s.mixers}});
  j["snapshots"] = snaps;
  nlohmann::json ev = nlohmann::json::array();
  for (const auto& e : events)
    ev.push_back({{"time", sessions::iso8601_utc(e.time)}, {"kind", e.kind}, {"detail", e.detail}});
  j["events"] = ev;
  nlohmann::json cks = nlohmann::json::array();
  for (const auto& k : c.checkpoints)
    cks.push_back({{"dir", k.dir.string()},
                   {"sequence", k.sequence},
                   {"run", k.run},
                   {"stage", k.stage},
                   {"step", k.step},
                   {"bytes", k.bytes},
                   {"complete", k.complete},
                   {"problem", k.problem}});
  j["checkpoints"] = cks;
  return j;
}

void print_text(const sessions::SessionReader& reader, const std::vector<sessions::Event>& events) {
  const sessions::SessionContents& c = reader.contents();
  const sessions::Provenance& p = c.provenance;
  std::printf("session     %s\n", c.path.c_str());
  std::printf("state       %s: %s\n", sessions::to_string(c.state), c.state_detail.c_str());
  std::printf("format      schema_version %lld, id %s, created %s\n",
              static_cast<long long>(c.schema_version), c.session_id.c_str(), c.created.c_str());
  std::printf("written by  HedgeLab %s, LibTorch %s, HDF5 %s on %s (%s, pid %lld), started %s\n",
              p.app_version.c_str(), p.torch_version.c_str(), p.hdf5_version.c_str(), p.device.c_str(),
              c.writer_host.c_str(), static_cast<long long>(c.writer_pid), p.start_time.c_str());
  std::printf("teacher     %s (weights %s)\n", or_dash(p.teacher_dir).c_str(),
              or_dash(p.teacher_hash).c_str());
  std::printf("corpus      %s (%s)\n", or_dash(p.corpus_path).c_str(), or_dash(p.corpus_hash).c_str());
  std::printf("seed        %llu\n", static_cast<unsigned long long>(p.seed));
  const sessions::SessionLayout& l = c.layout;
  std::printf("layout      L=%lld H=%lld Tp=%lld m=%lld P=%lld N=%lld d=%lld W=%lld, %zu loss parts\n",
              static_cast<long long>(l.layers), static_cast<long long>(l.heads),
              static_cast<long long>(l.probe_tokens), static_cast<long long>(l.feature_dim),
              static_cast<long long>(l.head_size), static_cast<long long>(l.state_size),
              static_cast<long long>(l.width), static_cast<long long>(l.conv_width), l.part_names.size());

  std::printf("\n%lld steps, %lld evaluation values, %lld snapshots, %lld events in %zu series:\n",
              static_cast<long long>(c.steps), static_cast<long long>(c.evals),
              static_cast<long long>(c.snapshots), static_cast<long long>(c.events), c.series.size());
  for (const auto& s : c.series) {
    std::printf("  %s/%s: %lld steps", s.run.c_str(), s.stage.c_str(), static_cast<long long>(s.steps));
    if (s.steps)
      std::printf(" (%lld..%lld), last: total %s lr %s grad_norm %s tokens/s %s",
                  static_cast<long long>(s.first_step), static_cast<long long>(s.last_step),
                  number(s.last.total).c_str(), number(s.last.lr).c_str(), number(s.last.grad_norm).c_str(),
                  number(s.last.tokens_per_second).c_str());
    std::printf("; %lld snapshots\n", static_cast<long long>(s.probes));
    if (!s.last.parts.empty()) {
      std::string parts;
      for (const auto& [name, value] : s.last.parts)
        parts += (parts.empty() ? "" : ", ") + name + " " + number(value);
      std::printf("    parts: %s\n", parts.c_str());
    }
    for (const auto& name : s.eval_metrics) {
      const sessions::Series e = reader.eval_metric(s.run, s.stage, name);
      std::printf("    %s: %s at step %lld (%zu evaluation%s)\n", name.c_str(),
                  number(e.values.back()).c_str(), static_cast<long long>(e.steps.back()), e.steps.size(),
                  e.steps.size() == 1 ? "" : "s");
    }
  }
  if (!c.snapshot_list.empty()) {
    // One line per stretch of consecutive snapshots of one series.
    std::printf("\nsnapshots:\n");
    const auto& list = c.snapshot_list;
    for (size_t a = 0; a < list.size();) {
      size_t b = a + 1;
      while (b < list.size() && list[b].run == list[a].run && list[b].stage == list[a].stage)
        ++b;
      std::printf("  #%lld..#%lld  %s/%s: %zu, steps %lld..%lld%s\n", static_cast<long long>(list[a].index),
                  static_cast<long long>(list[b - 1].index), list[a].run.c_str(), list[a].stage.c_str(),
                  b - a, static_cast<long long>(list[a].step), static_cast<long long>(list[b - 1].step),
                  list[a].mixers ? ", with mixer internals" : "");
      a = b;
    }
  }

  if (!events.empty()) {
    std::printf("\nevents:\n");
    for (const auto& e : events)
      std::printf("  %s  %-22s %s\n", sessions::iso8601_utc(e.time).c_str(), e.kind.c_str(),
                  e.detail.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  }
  const auto summary = reader.summary();
  if (!summary.empty()) {
    std::printf("\nsummary:\n  %-16s %12s %8s %12s %12s %8s %10s\n", "run", "perplexity", "ratio",
                "stage1 tok", "stage2 tok", "steps", "seconds");
    for (const auto& s : summary)
      std::printf("  %-16s %12s %8s %12lld %12lld %8lld %10s%s\n", s.run.c_str(),
                  number(s.perplexity).c_str(), number(s.ratio_to_teacher).c_str(),
                  static_cast<long long>(s.stage1_tokens), static_cast<long long>(s.stage2_tokens),
                  static_cast<long long>(s.steps), number(s.seconds).c_str(),
                  s.stopped_early ? "  (stopped early)" : "");
  }
  std::printf("\ncheckpoints: %lld written", static_cast<long long>(c.checkpoint_records));
  if (c.checkpoints.empty()) {
    std::printf(", none on disk\n");
  } else {
    std::printf(", on disk:\n");
    for (const auto& k : c.checkpoints)
      std::printf("  %s  %s\n", k.dir.filename().c_str(),
                  k.complete ? ("complete, " + std::to_string(k.bytes) + " bytes").c_str()
                             : ("not complete: " + k.problem).c_str());
  }
}

int show(const std::string& file, const Args& rest) {
  ArgParser p("session show FILE",
              "What a session holds: provenance, runs and their metrics (counts and last\n"
              "values), snapshots, events, the summary, checkpoints, and whether its\n"
              "writer closed it, is still running or died.");
  p.flag("json", "print JSON");
  if (!p.parse(rest)) return 0;
  const auto reader = sessions::SessionReader::open(file);
  const auto events = reader.events();
  if (p.enabled("json"))
    std::printf("%s\n", to_json(reader.contents(), events)
                            .dump(2, ' ', false, nlohmann::json::error_handler_t::replace)
                            .c_str());
  else
    print_text(reader, events);
  return 0;
}

int metrics(const std::string& file, const Args& rest) {
  ArgParser p(
      "session metrics FILE",
      "One metric over steps: a step column (lr, total, grad_norm, tokens, tokens_seen,\n"
      "tokens_per_second, wall_seconds), a loss part (e.g. cosine.layers.0, kd) or an evaluation metric\n"
      "(e.g. heldout_perplexity). --run and --stage pick the series when several carry the metric.");
  p.required("name", "NAME", "the metric")
      .option("run", "R", "the run (e.g. hedgemamba)", "")
      .option("stage", "S", "the stage (stage1 or stage2)", "")
      .flag("csv", "print CSV: a step,value header, then one row per step (default: aligned columns)");
  if (!p.parse(rest)) return 0;
  const auto reader = sessions::SessionReader::open(file);
  const std::string name = p.str("name"), run = p.str("run"), stage = p.str("stage");
  std::vector<const sessions::SeriesInfo*> matches;
  bool is_eval = false;
  for (const auto& s : reader.contents().series) {
    if ((!run.empty() && s.run != run) || (!stage.empty() && s.stage != stage)) continue;
    const bool step_metric = std::find(s.metrics.begin(), s.metrics.end(), name) != s.metrics.end();
    const bool eval_metric =
        std::find(s.eval_metrics.begin(), s.eval_metrics.end(), name) != s.eval_metrics.end();
    if (step_metric || eval_metric) {
      matches.push_back(&s);
      is_eval = !step_metric;
    }
  }
  if (matches.empty())
    throw Error(file, "no series" + (run.empty() ? std::string() : " of run '" + run + "'") +
                          (stage.empty() ? std::string() : " in stage '" + stage + "'") +
                          " carries metric '" + name + "' (see 'session show')");
  if (matches.size() > 1) {
    std::string names;
    for (const auto* s : matches)
      names += (names.empty() ? "" : ", ") + s->run + "/" + s->stage;
    throw UsageError("session metrics: several series carry '" + name + "' (" + names +
                     "); pick one with --run and --stage");
  }
  const sessions::SeriesInfo& s = *matches.front();
  const sessions::Series series =
      is_eval ? reader.eval_metric(s.run, s.stage, name) : reader.metric(s.run, s.stage, name);
  const bool csv = p.enabled("csv");
  if (csv)
    std::printf("step,value\n");
  else
    std::printf("%10s  %s\n", "step", name.c_str());
  for (size_t i = 0; i < series.steps.size(); ++i)
    std::printf(csv ? "%lld,%s\n" : "%10lld  %s\n", static_cast<long long>(series.steps[i]),
                exact(series.values[i]).c_str());
  return 0;
}

}  // namespace

int run_session(const Args& args) {
  if (args.empty()) throw UsageError("session: expected a subcommand, show or metrics (see --help)");
  if (args[0] == "--help" || args[0] == "-h") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  const std::string sub = args[0];
  if (sub != "show" && sub != "metrics")
    throw UsageError("session: unknown subcommand '" + sub + "'; expected show or metrics");
  // FILE comes right after the subcommand; anything else goes to the option parser (which also answers
  // --help).
  if (args.size() < 2 || args[1].rfind("--", 0) == 0) {
    if (args.size() >= 2 && (args[1] == "--help" || args[1] == "-h"))
      return sub == "show" ? show("", {"--help"}) : metrics("", {"--help"});
    throw UsageError("session " + sub + ": expected FILE after '" + sub + "'");
  }
  const Args rest(args.begin() + 2, args.end());
  return sub == "show" ? show(args[1], rest) : metrics(args[1], rest);
}

}  // namespace hedgelab::cli
