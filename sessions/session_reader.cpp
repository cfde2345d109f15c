#include "sessions/session_reader.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/common/error.h"
#include "sessions/checkpoint_folders.h"
#include "sessions/hdf5_support.h"
#include "sessions/schema.h"

namespace hedgelab::sessions {

namespace fs = std::filesystem;
using schema::kProbeFieldCount;

namespace {

constexpr unsigned char kHdf5Signature[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};

std::string host_name() {
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) != 0) return "";
  return name;
}

bool process_alive(int64_t pid) {
  return pid > 0 && (::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM);
}

std::string seconds_ago(double t) {
  char text[64];
  std::snprintf(text, sizeof text, "%.1f s ago", unix_now() - t);
  return text;
}

}  // namespace

struct SessionReader::Impl {
  SessionContents c;
  std::string where;
  h5::Handle file;  // declared first: closed last
  h5::Handle steps_d, parts_d, evals_d, events_d, event_detail_d, probe_index_d, token_offsets_d,
      token_bytes_d, summary_d, checkpoint_index_d;
  std::array<h5::Handle, kProbeFieldCount> fields;
  schema::ProgressRow progress;
  std::vector<schema::StepRow> step_rows;  // committed rows only
  std::vector<double> part_values;         // [steps, parts]
  std::vector<size_t> step_series;         // series index of each step row
  std::vector<schema::EvalRow> eval_rows;
  std::vector<size_t> eval_series;
  std::vector<schema::ProbeIndexRow> probe_rows;

  h5::Handle dataset(const std::string& name) const {
    if (!h5::exists(file.get(), name))
      throw Error(where, "missing dataset " + name + " (expected in a schema_version " +
                             std::to_string(c.schema_version) + " session)");
    return h5::dataset_handle(h5::check_id(H5Dopen2(file.get(), name.c_str(), H5P_DEFAULT), where,
                                           "cannot open dataset " + name + " (damaged file?)"));
  }
  // Another reader in this process holds the file open: HDF5 shares the open file and its cache, whose
  // dataset shapes may predate the progress record, and the tables then end where the cache says.
  bool shared_with_reader = false;
  // Rows of `d` that the writer committed; Error when the table is shorter (a damaged file).
  hsize_t committed(hid_t d, int64_t count, const char* name) const {
    const hsize_t n = h5::rows(d, where + ": " + name);
    if (shared_with_reader && count > 0 && static_cast<hsize_t>(count) > n) return n;
    if (count < 0 || static_cast<hsize_t>(count) > n)
      throw Error(where, std::string(name) + ": the progress record counts " + std::to_string(count) +
                             " rows, the dataset has " + std::to_string(n) + " (damaged file?)");
    return static_cast<hsize_t>(count);
  }
  // A group of the header; Error when it is missing or does not open.
  h5::Handle group(const char* path) const {
    if (!h5::exists(file.get(), path)) throw Error(where, std::string("missing group ") + path);
    return h5::group_handle(h5::check_id(H5Gopen2(file.get(), path, H5P_DEFAULT), where,
                                         std::string("cannot open ") + path + " (damaged file?)"));
  }
  std::string attribute(hid_t loc, const char* group, const char* name) const {
    auto v = h5::read_string_attribute(loc, name, where);
    if (!v) throw Error(where, std::string("missing attribute ") + group + " " + name);
    return *v;
  }
  int64_t int_attribute(hid_t loc, const char* group, const char* name) const {
    auto v = h5::read_int_attribute(loc, name, where);
    if (!v) throw Error(where, std::string("missing attribute ") + group + " " + name);
    return *v;
  }
  size_t series_index(const std::string& run, const std::string& stage) {
    for (size_t i = 0; i < c.series.size(); ++i)
      if (c.series[i].run == run && c.series[i].stage == stage) return i;
    if (std::find(c.runs.begin(), c.runs.end(), run) == c.runs.end()) c.runs.push_back(run);
    SeriesInfo s;
    s.run = run;
    s.stage = stage;
    c.series.push_back(s);
    return c.series.size() - 1;
  }
  const SeriesInfo* find_series(const std::string& run, const std::string& stage) const {
    for (const auto& s : c.series)
      if (s.run == run && s.stage == stage) return &s;
    return nullptr;
  }
  std::string series_names() const {
    std::string out;
    for (const auto& s : c.series)
      out += (out.empty() ? "" : ", ") + s.run + "/" + s.stage;
    return out.empty() ? "none" : out;
  }

  void close_handles() {
    for (auto& f : fields)
      f.reset();
    for (h5::Handle* h : {&steps_d, &parts_d, &evals_d, &events_d, &event_detail_d, &probe_index_d,
                          &token_offsets_d, &token_bytes_d, &summary_d, &checkpoint_index_d})
      h->reset();
    file.reset();
  }

  void open_file();
  void read_header();
  void read_tables();
  void load() {
    open_file();
    read_header();
    read_tables();
  }
  snapshot::StepReport step_report(size_t row) const;
};

void SessionReader::Impl::open_file() {
  h5::silence_errors();
  const fs::path& path = c.path;
  std::error_code ec;
  if (!fs::exists(path, ec)) throw Error(where, "no such file");
  if (fs::is_directory(path, ec)) throw Error(where, "is a folder; expected a session file (.h5)");
  {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(where, std::string("cannot read: ") + std::strerror(errno));
    unsigned char head[8] = {};
    in.read(reinterpret_cast<char*>(head), 8);
    if (in.gcount() != 8 || std::memcmp(head, kHdf5Signature, 8) != 0)
      throw Error(where, "not an HDF5 file (no HDF5 signature at its start); expected a HedgeLab session");
  }
  h5::Handle fapl = h5::plist_handle(h5::check_id(H5Pcreate(H5P_FILE_ACCESS), where, "cannot open"));
  // The writer's locking settings: HDF5 refuses to open a file twice in one process with different ones.
  h5::check(H5Pset_file_locking(fapl.get(), true, true), where, "cannot open");
  // Checksum failures are retried in SWMR reading (a writer may be mid-write); a few tries are plenty and
  // keep a damaged file from taking long to refuse.
  h5::check(H5Pset_metadata_read_attempts(fapl.get(), 8), where, "cannot open");
  const hid_t id = H5Fopen(path.c_str(), H5F_ACC_RDONLY | H5F_ACC_SWMR_READ, fapl.get());
  if (id >= 0) {
    file = h5::file_handle(id);
    unsigned intent = 0;
    const bool written_here = H5Fget_intent(id, &intent) >= 0 && (intent & H5F_ACC_RDWR) != 0;
    shared_with_reader = !written_here && H5Fget_obj_count(id, H5F_OBJ_FILE) > 1;
    return;
  }
  const std::string reason = h5::error_reason();
  // Not SWMR-readable: an HDF5 file in an older format is not a session; anything else is damage.
  const hid_t plain = H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get());
  if (plain >= 0) {
    h5::Handle f = h5::file_handle(plain);
    auto version = h5::read_int_attribute(f.get(), "schema_version", where);
    if (version && *version > kSchemaVersion)
      throw Error(where, "written by a newer HedgeLab (schema_version " + std::to_string(*version) +
                             "; this version reads up to " + std::to_string(kSchemaVersion) + ")");
    throw Error(where,
                "an HDF5 file but not a HedgeLab session (expected the SWMR format and a schema_version "
                "attribute)");
  }
  H5Eclear2(H5E_DEFAULT);
  throw Error(where, "cannot open as a session: damaged or truncated HDF5 file" +
                         (reason.empty() ? std::string() : " (HDF5: " + reason + ")"));
}

void SessionReader::Impl::read_header() {
  const hid_t f = file.get();
  h5::Handle root = h5::group_handle(h5::check_id(H5Gopen2(f, "/", H5P_DEFAULT), where, "cannot open /"));
  auto version = h5::read_int_attribute(root.get(), "schema_version", where);
  if (!version) throw Error(where, "not a HedgeLab session (no schema_version attribute)");
  if (*version > kSchemaVersion)
    throw Error(where, "written by a newer HedgeLab (schema_version " + std::to_string(*version) +
                           "; this version reads up to " + std::to_string(kSchemaVersion) +
                           "): update HedgeLab to open it");
  if (*version < 1) throw Error(where, "schema_version " + std::to_string(*version) + ": expected 1 or more");
  c.schema_version = *version;
  // Version dispatch: every older schema_version maps onto the structs here. Version 1 is the first.
  if (attribute(root.get(), "/", "format") != schema::kFormatName)
    throw Error(where, std::string("attribute / format: expected \"") + schema::kFormatName + "\"");
  c.session_id = attribute(root.get(), "/", "session_id");
  c.created = attribute(root.get(), "/", "created");
  c.writer_host = attribute(root.get(), "/", "writer_host");
  c.writer_pid = int_attribute(root.get(), "/", "writer_pid");

  const h5::Handle prov = group("/provenance");
  const auto text = [&](const char* name) { return attribute(prov.get(), "/provenance", name); };
  Provenance& p = c.provenance;
  p.app_version = text("app_version");
  p.torch_version = text("torch_version");
  p.hdf5_version = text("hdf5_version");
  p.device = text("device");
  p.teacher_dir = text("teacher_dir");
  p.teacher_hash = text("teacher_hash");
  p.corpus_path = text("corpus_path");
  p.corpus_hash = text("corpus_hash");
  p.start_time = text("start_time");
  const std::string seed = text("seed");
  try {
    size_t used = 0;
    p.seed = std::stoull(seed, &used);
    if (used != seed.size()) throw std::invalid_argument(seed);
  } catch (const std::exception&) {
    throw Error(where, "attribute /provenance seed: expected an unsigned integer, got '" + seed + "'");
  }
  if (!h5::exists(f, schema::kRecipe)) throw Error(where, std::string("missing dataset ") + schema::kRecipe);
  const std::string recipe = h5::read_bytes_dataset(f, schema::kRecipe, where);
  try {
    p.recipe = nlohmann::json::parse(recipe);
  } catch (const std::exception&) {
    throw Error(where, std::string(schema::kRecipe) + ": expected JSON");
  }

  const h5::Handle lay = group("/layout");
  const auto number = [&](const char* name) { return int_attribute(lay.get(), "/layout", name); };
  SessionLayout& l = c.layout;
  l.layers = number("layers");
  l.heads = number("heads");
  l.probe_tokens = number("probe_tokens");
  l.feature_dim = number("feature_dim");
  l.head_size = number("head_size");
  l.state_size = number("state_size");
  l.width = number("width");
  l.conv_width = number("conv_width");
  {
    h5::Handle names = dataset(schema::kPartNames);
    const hsize_t n = h5::rows(names.get(), where + ": " + schema::kPartNames);
    h5::Handle t = h5::string_type(schema::kName);
    std::vector<char> packed(n * schema::kName);
    h5::read_rows(names.get(), t.get(), 0, n, packed.data(), where + ": " + schema::kPartNames);
    l.part_names.clear();
    for (hsize_t i = 0; i < n; ++i)
      l.part_names.push_back(h5::get_name(&packed[i * schema::kName], schema::kName));
  }
  l.validate(where);

  h5::Handle progress_d = dataset(schema::kProgress);
  h5::Handle progress_t = schema::progress_type();
  h5::check(H5Dread(progress_d.get(), progress_t.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, &progress), where,
            std::string("cannot read ") + schema::kProgress + " (damaged file?)");
  c.flushes = progress.flushes;
  c.last_flush_time = progress.last_flush_time;
  const std::string last = iso8601_utc(progress.last_flush_time);
  if (progress.state == schema::kComplete) {
    c.state = SessionState::Complete;
    c.state_detail = "closed by the writer at " + last;
  } else if (progress.state == schema::kAbandoned) {
    c.state = SessionState::Abandoned;
    c.state_detail = "the writer closed the file without finishing the session, at " + last;
  } else if (c.writer_host == host_name() && process_alive(c.writer_pid)) {
    c.state = SessionState::Live;
    c.state_detail = "the writer (pid " + std::to_string(c.writer_pid) + ") is running; last commit " +
                     seconds_ago(progress.last_flush_time);
  } else {
    c.state = SessionState::Crashed;
    c.state_detail =
        (c.writer_host == host_name() ? "the writer (pid " + std::to_string(c.writer_pid) + ") is gone"
                                      : "written on host " + c.writer_host + ", never closed") +
        "; last commit at " + last + " (what it committed is intact)";
  }
}

snapshot::StepReport SessionReader::Impl::step_report(size_t i) const {
  const schema::StepRow& r = step_rows[i];
  snapshot::StepReport s;
  schema::copy_step_fields(r, s);
  const size_t n_parts = c.layout.part_names.size();
  for (size_t j = 0; j < n_parts; ++j) {
    const double v = part_values[i * n_parts + j];
    if (!std::isnan(v)) s.parts.emplace_back(c.layout.part_names[j], v);
  }
  return s;
}

void SessionReader::Impl::read_tables() {
  const size_t n_parts = c.layout.part_names.size();
  steps_d = dataset(schema::kSteps);
  if (n_parts > 0) parts_d = dataset(schema::kParts);
  evals_d = dataset(schema::kEvals);
  events_d = dataset(schema::kEvents);
  event_detail_d = dataset(schema::kEventDetail);
  probe_index_d = dataset(schema::kProbeIndex);
  if (c.layout.probe_tokens > 0) token_offsets_d = dataset(schema::kTokenOffsets);
  token_bytes_d = dataset(schema::kTokenBytes);
  summary_d = dataset(schema::kSummary);
  checkpoint_index_d = dataset(schema::kCheckpointIndex);
  for (int f = 0; f < kProbeFieldCount; ++f) {
    bool room = true;
    for (hsize_t d : schema::probe_field_dims(f, c.layout))
      room = room && d > 0;
    if (room) fields[f] = dataset(schema::probe_path(schema::probe_field(f).name));
  }

  c.steps = static_cast<int64_t>(committed(steps_d.get(), progress.steps, schema::kSteps));
  c.evals = static_cast<int64_t>(committed(evals_d.get(), progress.evals, schema::kEvals));
  c.events = static_cast<int64_t>(committed(events_d.get(), progress.events, schema::kEvents));
  c.snapshots = static_cast<int64_t>(committed(probe_index_d.get(), progress.probes, schema::kProbeIndex));
  c.summary_rows = static_cast<int64_t>(committed(summary_d.get(), progress.summary_rows, schema::kSummary));
  c.checkpoint_records = static_cast<int64_t>(
      committed(checkpoint_index_d.get(), progress.checkpoints, schema::kCheckpointIndex));

  if (n_parts > 0) c.steps = static_cast<int64_t>(committed(parts_d.get(), c.steps, schema::kParts));
  const hsize_t n_steps = static_cast<hsize_t>(c.steps);
  step_rows.resize(n_steps);
  h5::Handle step_t = schema::step_type();
  h5::read_rows(steps_d.get(), step_t.get(), 0, n_steps, step_rows.data(), where + ": " + schema::kSteps);
  part_values.assign(n_steps * n_parts, 0.0);
  if (n_parts > 0)
    h5::read_rows(parts_d.get(), H5T_NATIVE_DOUBLE, 0, n_steps, part_values.data(),
                  where + ": " + schema::kParts);
  std::vector<std::vector<bool>> carried;
  step_series.resize(n_steps);
  for (size_t i = 0; i < n_steps; ++i) {
    const size_t k = series_index(h5::get_name(step_rows[i].run, schema::kName),
                                  h5::get_name(step_rows[i].stage, schema::kStage));
    step_series[i] = k;
    if (carried.size() <= k) carried.resize(k + 1, std::vector<bool>(n_parts, false));
    SeriesInfo& s = c.series[k];
    if (s.steps == 0) s.first_step = step_rows[i].step;
    s.last_step = step_rows[i].step;
    ++s.steps;
    for (size_t j = 0; j < n_parts; ++j)
      if (!std::isnan(part_values[i * n_parts + j])) carried[k][j] = true;
  }
  for (size_t k = 0; k < c.series.size(); ++k) {
    SeriesInfo& s = c.series[k];
    s.metrics = step_metric_names();
    for (size_t j = 0; j < n_parts; ++j)
      if (carried[k][j]) s.metrics.push_back(c.layout.part_names[j]);
  }
  std::vector<bool> have_last(c.series.size(), false);
  for (size_t i = n_steps; i-- > 0;) {
    const size_t k = step_series[i];
    if (have_last[k]) continue;
    c.series[k].last = step_report(i);
    have_last[k] = true;
  }

  eval_rows.resize(static_cast<size_t>(c.evals));
  h5::Handle eval_t = schema::eval_type();
  h5::read_rows(evals_d.get(), eval_t.get(), 0, eval_rows.size(), eval_rows.data(),
                where + ": " + schema::kEvals);
  eval_series.resize(eval_rows.size());
  for (size_t i = 0; i < eval_rows.size(); ++i) {
    const size_t k = series_index(h5::get_name(eval_rows[i].run, schema::kName),
                                  h5::get_name(eval_rows[i].stage, schema::kStage));
    eval_series[i] = k;
    SeriesInfo& s = c.series[k];
    ++s.evals;
    const std::string name = h5::get_name(eval_rows[i].name, schema::kName);
    if (std::find(s.eval_metrics.begin(), s.eval_metrics.end(), name) == s.eval_metrics.end())
      s.eval_metrics.push_back(name);
  }

  probe_rows.resize(static_cast<size_t>(c.snapshots));
  h5::Handle index_t = schema::probe_index_type();
  h5::read_rows(probe_index_d.get(), index_t.get(), 0, probe_rows.size(), probe_rows.data(),
                where + ": " + schema::kProbeIndex);
  for (size_t i = 0; i < probe_rows.size(); ++i) {
    const schema::ProbeIndexRow& r = probe_rows[i];
    SnapshotInfo info;
    info.index = static_cast<int64_t>(i);
    info.run = h5::get_name(r.run, schema::kName);
    info.stage = h5::get_name(r.stage, schema::kStage);
    info.step = r.step;
    info.tokens_seen = r.tokens_seen;
    info.mixers = r.n_mixers > 0;
    info.time = r.time;
    ++c.series[series_index(info.run, info.stage)].probes;
    c.snapshot_list.push_back(info);
  }
  for (SeriesInfo& s : c.series)
    if (s.steps == 0) s.metrics.clear();  // a series of evaluations or snapshots only has no step metrics

  c.checkpoints = checkpoint_folders::list(c.path, c.session_id, false);
}

SessionReader::SessionReader(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SessionReader::SessionReader(SessionReader&&) noexcept = default;
SessionReader& SessionReader::operator=(SessionReader&&) noexcept = default;
SessionReader::~SessionReader() = default;

SessionReader SessionReader::open(const fs::path& path) {
  auto impl = std::make_unique<Impl>();
  impl->c.path = path;
  impl->where = path.string();
  impl->load();
  return SessionReader(std::move(impl));
}

void SessionReader::refresh() {
  auto fresh = std::make_unique<Impl>();
  fresh->c.path = impl_->c.path;
  fresh->where = impl_->where;
  // HDF5 shares a file opened twice in one process, caches included: this reader's handles are closed first
  // so that, unless another reader holds the file, its metadata is read again. A failed refresh keeps the
  // listing; reads that need the file then fail until a refresh succeeds.
  impl_->close_handles();
  fresh->load();
  impl_ = std::move(fresh);
}

const SessionContents& SessionReader::contents() const {
  return impl_->c;
}

Series SessionReader::metric(const std::string& run, const std::string& stage,
                             const std::string& name) const {
  const Impl& r = *impl_;
  h5::silence_errors();
  if (!r.find_series(run, stage))
    throw Error(r.where,
                "no steps of run '" + run + "' in stage '" + stage + "' (series: " + r.series_names() + ")");
  const auto& base = step_metric_names();
  const auto b = std::find(base.begin(), base.end(), name);
  const auto& parts = r.c.layout.part_names;
  const auto p = std::find(parts.begin(), parts.end(), name);
  if (b == base.end() && p == parts.end())
    throw Error(r.where, "no step metric '" + name +
                             "' (expected lr, total, grad_norm, tokens, tokens_seen, "
                             "tokens_per_second, wall_seconds or one of the " +
                             std::to_string(parts.size()) + " loss parts)");
  Series out;
  const size_t n_parts = parts.size();
  for (size_t i = 0; i < r.step_rows.size(); ++i) {
    const SeriesInfo& s = r.c.series[r.step_series[i]];
    if (s.run != run || s.stage != stage) continue;
    const schema::StepRow& row = r.step_rows[i];
    double v = 0.0;
    if (p != parts.end()) {
      v = r.part_values[i * n_parts + static_cast<size_t>(p - parts.begin())];
      if (std::isnan(v)) continue;
    } else if (name == "lr") {
      v = row.lr;
    } else if (name == "total") {
      v = row.total;
    } else if (name == "grad_norm") {
      v = row.grad_norm;
    } else if (name == "tokens") {
      v = static_cast<double>(row.tokens);
    } else if (name == "tokens_seen") {
      v = static_cast<double>(row.tokens_seen);
    } else if (name == "tokens_per_second") {
      v = row.tokens_per_second;
    } else {
      v = row.wall_seconds;
    }
    out.steps.push_back(row.step);
    out.values.push_back(v);
  }
  return out;
}

Series SessionReader::eval_metric(const std::string& run, const std::string& stage,
                                  const std::string& name) const {
  const Impl& r = *impl_;
  const SeriesInfo* s = r.find_series(run, stage);
  if (!s)
    throw Error(r.where, "no run '" + run + "' in stage '" + stage + "' (series: " + r.series_names() + ")");
  if (std::find(s->eval_metrics.begin(), s->eval_metrics.end(), name) == s->eval_metrics.end())
    throw Error(r.where, "no evaluation metric '" + name + "' for " + run + "/" + stage);
  Series out;
  for (size_t i = 0; i < r.eval_rows.size(); ++i) {
    const SeriesInfo& si = r.c.series[r.eval_series[i]];
    if (si.run != run || si.stage != stage || h5::get_name(r.eval_rows[i].name, schema::kName) != name)
      continue;
    out.steps.push_back(r.eval_rows[i].step);
    out.values.push_back(r.eval_rows[i].value);
  }
  return out;
}

std::vector<snapshot::StepReport> SessionReader::steps(const std::string& run,
                                                       const std::string& stage) const {
  const Impl& r = *impl_;
  if (!r.find_series(run, stage))
    throw Error(r.where,
                "no steps of run '" + run + "' in stage '" + stage + "' (series: " + r.series_names() + ")");
  std::vector<snapshot::StepReport> out;
  for (size_t i = 0; i < r.step_rows.size(); ++i) {
    const SeriesInfo& s = r.c.series[r.step_series[i]];
    if (s.run == run && s.stage == stage) out.push_back(r.step_report(i));
  }
  return out;
}

std::vector<snapshot::EvalReport> SessionReader::evals(const std::string& run,
                                                       const std::string& stage) const {
  const Impl& r = *impl_;
  std::vector<snapshot::EvalReport> out;
  for (size_t i = 0; i < r.eval_rows.size(); ++i) {
    const SeriesInfo& s = r.c.series[r.eval_series[i]];
    if (s.run != run || s.stage != stage) continue;
    const schema::EvalRow& e = r.eval_rows[i];
    if (out.empty() || out.back().step != e.step) out.push_back(snapshot::EvalReport{e.step, {}});
    out.back().metrics.emplace_back(h5::get_name(e.name, schema::kName), e.value);
  }
  return out;
}

std::vector<Event> SessionReader::events() const {
  const Impl& r = *impl_;
  h5::silence_errors();
  std::vector<schema::EventRow> rows(static_cast<size_t>(r.c.events));
  h5::Handle t = schema::event_type();
  h5::read_rows(r.events_d.get(), t.get(), 0, rows.size(), rows.data(), r.where + ": " + schema::kEvents);
  int64_t end = 0;
  for (const auto& e : rows) {
    if (e.detail_offset < 0 || e.detail_length < 0)
      throw Error(r.where,
                  std::string(schema::kEvents) + ": negative detail offset or length (damaged file?)");
    end = std::max(end, e.detail_offset + e.detail_length);
  }
  const hsize_t stored = h5::rows(r.event_detail_d.get(), r.where + ": " + schema::kEventDetail);
  if (static_cast<hsize_t>(end) > stored)
    throw Error(r.where, std::string(schema::kEventDetail) + ": expected at least " + std::to_string(end) +
                             " bytes, found " + std::to_string(stored) + " (damaged file?)");
  std::string bytes(static_cast<size_t>(end), '\0');
  h5::read_rows(r.event_detail_d.get(), H5T_NATIVE_UINT8, 0, bytes.size(), bytes.data(),
                r.where + ": " + schema::kEventDetail);
  std::vector<Event> out;
  for (size_t i = 0; i < rows.size(); ++i) {
    Event e;
    e.time = rows[i].time;
    e.kind = h5::get_name(rows[i].kind, schema::kKind);
    try {
      e.detail = nlohmann::json::parse(bytes.substr(static_cast<size_t>(rows[i].detail_offset),
                                                    static_cast<size_t>(rows[i].detail_length)));
    } catch (const std::exception&) {
      throw Error(r.where, "event " + std::to_string(i) + ": its detail is not JSON (damaged file?)");
    }
    out.push_back(std::move(e));
  }
  return out;
}

snapshot::ProbeSnapshot SessionReader::probe(int64_t index) const {
  const Impl& r = *impl_;
  h5::silence_errors();
  if (index < 0 || index >= r.c.snapshots)
    throw Error(r.where, "probe snapshot " + std::to_string(index) + ": expected an index in [0, " +
                             std::to_string(r.c.snapshots) + ")");
  const schema::ProbeIndexRow& row = r.probe_rows[static_cast<size_t>(index)];
  const std::string where = r.where + ": probe snapshot " + std::to_string(index);
  const SessionLayout& lay = r.c.layout;
  snapshot::ProbeSnapshot s;
  s.run = h5::get_name(row.run, schema::kName);
  s.stage = h5::get_name(row.stage, schema::kStage);
  s.step = row.step;
  s.tokens_seen = row.tokens_seen;
  // The counts must be ones the writer accepts (0 or the layout's), else the row is damaged.
  {
    const auto ok = [](int64_t n, int64_t full) { return n == 0 || n == full; };
    if (!ok(row.n_alignment, lay.layers) || !ok(row.n_attention, lay.layers * lay.heads) ||
        !ok(row.n_features, lay.layers) || !ok(row.n_mixers, lay.layers))
      throw Error(where, "index row has sizes the layout does not allow (damaged file?)");
  }
  schema::size_snapshot(s, row, lay);
  std::vector<double> values;
  for (int f = 0; f < kProbeFieldCount; ++f) {
    const int64_t at = row.rows[f];
    if (at < 0) continue;
    const char* name = schema::probe_field(f).name;
    if (!r.fields[f]) throw Error(where, std::string(name) + ": stored for a layout without room for it");
    const std::vector<hsize_t> dims = schema::probe_field_dims(f, lay);
    hsize_t n = 1;
    for (hsize_t d : dims)
      n *= d;
    values.assign(n, 0.0);
    h5::read_rows(r.fields[f].get(), H5T_NATIVE_DOUBLE, static_cast<hsize_t>(at), 1, values.data(),
                  where + ": " + name);
    // A field present in the row must have its parent vector non-empty, or there is nowhere to put it.
    const bool has_parent =
        (f == schema::kAlignment && row.n_alignment > 0) ||
        ((f == schema::kHeadStats || f == schema::kAttentionTeacher || f == schema::kAttentionStudent ||
          f == schema::kTeacherLogits || f == schema::kFeatureLogits) &&
         row.n_attention > 0) ||
        ((f == schema::kFeatureQ || f == schema::kFeatureK) && row.n_features > 0) ||
        (f >= schema::kMixerDelta && row.n_mixers > 0);
    if (!has_parent) throw Error(where, std::string(name) + ": stored without its entries (damaged file?)");
    schema::scatter_probe_field(f, s, lay, values);
  }
  if (row.tokens_row >= 0) {
    if (!r.token_offsets_d) throw Error(where, "token labels stored for a layout without probe tokens");
    std::vector<int64_t> offsets(static_cast<size_t>(lay.probe_tokens) + 1);
    h5::read_rows(r.token_offsets_d.get(), H5T_NATIVE_INT64, static_cast<hsize_t>(row.tokens_row), 1,
                  offsets.data(), where + ": " + schema::kTokenOffsets);
    const hsize_t stored = h5::rows(r.token_bytes_d.get(), where + ": " + schema::kTokenBytes);
    for (size_t i = 0; i + 1 < offsets.size(); ++i)
      if (offsets[i] < 0 || offsets[i + 1] < offsets[i] || static_cast<hsize_t>(offsets[i + 1]) > stored)
        throw Error(where, std::string(schema::kTokenOffsets) +
                               ": offsets out of order or past the stored bytes "
                               "(damaged file?)");
    std::string bytes(static_cast<size_t>(offsets.back() - offsets.front()), '\0');
    h5::read_rows(r.token_bytes_d.get(), H5T_NATIVE_UINT8, static_cast<hsize_t>(offsets.front()),
                  bytes.size(), bytes.data(), where + ": " + schema::kTokenBytes);
    for (size_t i = 0; i + 1 < offsets.size(); ++i)
      s.tokens.push_back(bytes.substr(static_cast<size_t>(offsets[i] - offsets.front()),
                                      static_cast<size_t>(offsets[i + 1] - offsets[i])));
  }
  return s;
}

std::vector<snapshot::RunSummary> SessionReader::summary() const {
  const Impl& r = *impl_;
  h5::silence_errors();
  std::vector<schema::SummaryRow> rows(static_cast<size_t>(r.c.summary_rows));
  h5::Handle t = schema::summary_type();
  h5::read_rows(r.summary_d.get(), t.get(), 0, rows.size(), rows.data(), r.where + ": " + schema::kSummary);
  int64_t newest = 0;
  for (const auto& row : rows)
    newest = std::max(newest, row.generation);
  std::vector<snapshot::RunSummary> out;
  for (const auto& row : rows) {
    const std::string run = h5::get_name(row.run, schema::kName);
    if (row.generation != newest || run.empty()) continue;
    snapshot::RunSummary s;
    s.run = run;
    schema::copy_summary_fields(row, s);
    out.push_back(s);
  }
  return out;
}

std::vector<CheckpointInfo> SessionReader::checkpoints(bool verify_hashes) const {
  return checkpoint_folders::list(impl_->c.path, impl_->c.session_id, verify_hashes);
}

}  // namespace hedgelab::sessions
