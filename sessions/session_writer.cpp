#include "sessions/session_writer.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <unordered_map>

#include "core/common/error.h"
#include "sessions/checkpoint_folders.h"
#include "sessions/hdf5_support.h"
#include "sessions/schema.h"

namespace hedgelab::sessions {

namespace fs = std::filesystem;
using schema::kProbeFieldCount;

namespace {

constexpr int kProbeDeflate = 1;  // level 4 saves ~1% more on probe data at ~20% more time

std::string random_hex(size_t bytes) {
  std::random_device rd;
  std::string out;
  static const char* digits = "0123456789abcdef";
  for (size_t i = 0; i < bytes; ++i) {
    const unsigned v = rd() & 0xffu;
    out += digits[v >> 4];
    out += digits[v & 15];
  }
  return out;
}

std::string host_name() {
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) != 0) return "";
  return name;
}

void fsync_directory(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

bool process_alive(long pid) {
  return pid > 0 && (::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM);
}

// Temporary files of sessions whose creation was killed: ".<name>.creating-<pid>-<random>" with a dead pid.
void remove_stale_temporaries(const fs::path& dir, const std::string& name) {
  const std::string prefix = "." + name + ".creating-";
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string f = it->path().filename().string();
    if (f.rfind(prefix, 0) != 0) continue;
    const long pid = std::strtol(f.c_str() + prefix.size(), nullptr, 10);
    std::error_code rm;
    if (!process_alive(pid)) fs::remove(it->path(), rm);
  }
}

// Chunking of a probe field: one snapshot per chunk, or one layer of one snapshot when a snapshot is 64 KiB
// or more, so that a viewer reading one layer reads little. Each chunk is written whole, once, so it can be
// compressed (shuffle + deflate) without ever being rewritten.
h5::TableSpec probe_field_spec(const std::vector<hsize_t>& dims, size_t element_bytes) {
  h5::TableSpec spec;
  spec.dims = dims;
  spec.chunk_rows = 1;
  spec.deflate = kProbeDeflate;
  hsize_t row_bytes = element_bytes;
  for (hsize_t d : dims)
    row_bytes *= d;
  if (row_bytes >= 64 * 1024) {
    spec.chunk_dims = dims;
    spec.chunk_dims[0] = 1;
  }
  return spec;
}

}  // namespace

struct SessionWriter::Impl {
  fs::path path;
  std::string where;  // the path, for messages
  std::string session_id;
  SessionLayout layout;
  WriterOptions options;

  h5::Handle file;  // declared first: closed last
  h5::Handle progress_t, step_t, eval_t, event_t, summary_t, checkpoint_t, probe_index_t;
  h5::Handle progress, steps, parts, evals, events, event_detail, probe_index, token_offsets, token_bytes,
      summary, checkpoint_index;
  std::array<h5::Handle, kProbeFieldCount> fields;

  std::unordered_map<std::string, size_t> part_column;
  schema::ProgressRow counts;  // rows appended so far; the file's /session/progress holds the committed ones
  int64_t event_bytes = 0, token_sets = 0, token_byte_count = 0, summary_generation = 0;
  std::array<int64_t, kProbeFieldCount> field_rows{};
  std::array<std::vector<double>, kProbeFieldCount> last_shared;
  std::array<int64_t, kProbeFieldCount> last_shared_row{};
  std::vector<std::string> last_tokens;
  int64_t last_tokens_row = -1;
  int64_t next_checkpoint = 1;

  bool dirty = false;
  bool closed = false;
  std::string failure;  // the error that stopped the writer
  std::chrono::steady_clock::time_point last_commit = std::chrono::steady_clock::now();

  void usable() const {
    if (closed) throw Error(where, "the session writer is closed");
    if (!failure.empty()) throw Error(where, "the session writer stopped after an earlier error: " + failure);
  }

  // Runs a step that writes to the file. After a failure (full disk, I/O error) the library's view of the
  // file no longer matches the disk: the writer fences the file and refuses further writes, so what was
  // committed before stays readable.
  template <class F>
  void writing(F&& f) {
    try {
      f();
    } catch (const Error& e) {
      failure = e.what();
      fence();
      throw;
    }
  }

  // Swaps the library's file descriptor for a read-only one: no later flush (the destructor's, or the
  // library's at exit) can write metadata pointing at data that never reached the disk.
  void fence() {
    if (!file) return;
    void* handle = nullptr;
    if (H5Fget_vfd_handle(file.get(), H5P_DEFAULT, &handle) < 0 || !handle) {
      H5Eclear2(H5E_DEFAULT);
      return;
    }
    const int fd = *static_cast<int*>(handle);
    const int read_only = ::open(path.c_str(), O_RDONLY);
    if (read_only < 0) return;
    ::dup2(read_only, fd);
    ::close(read_only);
  }

  // Two flushes around the progress record: the data reach the file before the counts that make them
  // visible, so a reader never takes a half-written row.
  void commit(int32_t state) {
    h5::check(H5Fflush(file.get(), H5F_SCOPE_LOCAL), where, "cannot flush the session (disk full?)");
    schema::ProgressRow p = counts;
    p.state = state;
    p.flushes = ++counts.flushes;
    p.last_flush_time = unix_now();
    h5::check(H5Dwrite(progress.get(), progress_t.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, &p), where,
              "cannot record the session's progress (disk full?)");
    h5::check(H5Fflush(file.get(), H5F_SCOPE_LOCAL), where, "cannot flush the session (disk full?)");
    last_commit = std::chrono::steady_clock::now();
    dirty = false;
  }

  void commit_if_due() {
    const double age = std::chrono::duration<double>(std::chrono::steady_clock::now() - last_commit).count();
    if (dirty && age >= options.flush_interval) commit(schema::kOpen);
  }

  void check_name(const std::string& value, size_t max_bytes, const char* what) const {
    if (value.empty() || value.size() > max_bytes)
      throw Error(where, std::string(what) + " '" + value + "': expected 1 to " + std::to_string(max_bytes) +
                             " bytes");
  }

  void close_datasets() {
    for (auto& f : fields)
      f.reset();
    for (h5::Handle* h : {&progress, &steps, &parts, &evals, &events, &event_detail, &probe_index,
                          &token_offsets, &token_bytes, &summary, &checkpoint_index})
      h->reset();
  }

  void build(const Provenance& provenance);
};

namespace {

h5::Handle make_group(hid_t loc, const char* name, const std::string& where) {
  return h5::group_handle(h5::check_id(H5Gcreate2(loc, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), where,
                                       std::string("cannot create group ") + name));
}

}  // namespace

void SessionWriter::Impl::build(const Provenance& provenance) {
  const hid_t f = file.get();
  h5::Handle root = h5::group_handle(h5::check_id(H5Gopen2(f, "/", H5P_DEFAULT), where, "cannot open /"));
  h5::write_attribute(root.get(), "schema_version", int64_t{kSchemaVersion}, where);
  h5::write_attribute(root.get(), "format", schema::kFormatName, where);
  h5::write_attribute(root.get(), "session_id", session_id, where);
  h5::write_attribute(root.get(), "created", iso8601_utc(unix_now()), where);
  h5::write_attribute(root.get(), "writer_host", host_name(), where);
  h5::write_attribute(root.get(), "writer_pid", static_cast<int64_t>(::getpid()), where);

  {
    h5::Handle g = make_group(f, "provenance", where);
    h5::write_attribute(g.get(), "app_version", provenance.app_version, where);
    h5::write_attribute(g.get(), "torch_version", provenance.torch_version, where);
    h5::write_attribute(g.get(), "hdf5_version",
                        provenance.hdf5_version.empty() ? h5::library_version() : provenance.hdf5_version,
                        where);
    h5::write_attribute(g.get(), "device", provenance.device, where);
    h5::write_attribute(g.get(), "teacher_dir", provenance.teacher_dir, where);
    h5::write_attribute(g.get(), "teacher_hash", provenance.teacher_hash, where);
    h5::write_attribute(g.get(), "corpus_path", provenance.corpus_path, where);
    h5::write_attribute(g.get(), "corpus_hash", provenance.corpus_hash, where);
    h5::write_attribute(g.get(), "seed", std::to_string(provenance.seed), where);
    h5::write_attribute(g.get(), "start_time", provenance.start_time, where);
    h5::write_bytes_dataset(g.get(), "recipe_json",
                            provenance.recipe.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                            where);
  }
  {
    h5::Handle g = make_group(f, "layout", where);
    const std::pair<const char*, int64_t> sizes[] = {{"layers", layout.layers},
                                                     {"heads", layout.heads},
                                                     {"probe_tokens", layout.probe_tokens},
                                                     {"feature_dim", layout.feature_dim},
                                                     {"head_size", layout.head_size},
                                                     {"state_size", layout.state_size},
                                                     {"width", layout.width},
                                                     {"conv_width", layout.conv_width}};
    for (const auto& [name, value] : sizes)
      h5::write_attribute(g.get(), name, value, where);
  }
  {
    h5::Handle g = make_group(f, "session", where);
    progress_t = schema::progress_type();
    progress = h5::create_fixed(g.get(), "progress", progress_t.get(), {1}, where);
    schema::ProgressRow p;
    p.last_flush_time = unix_now();
    h5::check(H5Dwrite(progress.get(), progress_t.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, &p), where,
              "cannot write /session/progress");
  }
  {
    h5::Handle g = make_group(f, "metrics", where);
    step_t = schema::step_type();
    steps = h5::create_table(g.get(), "steps", step_t.get(), h5::table_spec({}, 64), where);
    const hsize_t n_parts = layout.part_names.size();
    h5::Handle names_t = h5::string_type(schema::kName);
    h5::Handle names = h5::create_table(g.get(), "part_names", names_t.get(), h5::table_spec({}, 64), where);
    std::vector<char> packed(n_parts * schema::kName, '\0');
    for (size_t i = 0; i < n_parts; ++i) {
      h5::put_name(&packed[i * schema::kName], schema::kName, layout.part_names[i], where);
      part_column[layout.part_names[i]] = i;
    }
    h5::write_rows(names.get(), names_t.get(), 0, n_parts, packed.data(), where + ": " + schema::kPartNames);
    if (n_parts > 0)
      parts = h5::create_table(g.get(), "parts", H5T_IEEE_F64LE, h5::table_spec({n_parts}, 64), where);
    eval_t = schema::eval_type();
    evals = h5::create_table(g.get(), "evals", eval_t.get(), h5::table_spec({}, 256), where);
  }
  {
    h5::Handle g = make_group(f, "events", where);
    event_t = schema::event_type();
    events = h5::create_table(g.get(), "index", event_t.get(), h5::table_spec({}, 64), where);
    event_detail = h5::create_table(g.get(), "detail_json", H5T_STD_U8LE, h5::table_spec({}, 4096), where);
  }
  {
    h5::Handle g = make_group(f, "probes", where);
    probe_index_t = schema::probe_index_type();
    probe_index = h5::create_table(g.get(), "index", probe_index_t.get(), h5::table_spec({}, 64), where);
    if (layout.probe_tokens > 0)
      token_offsets =
          h5::create_table(g.get(), "token_offsets", H5T_STD_I64LE,
                           h5::table_spec({static_cast<hsize_t>(layout.probe_tokens) + 1}, 16), where);
    token_bytes = h5::create_table(g.get(), "token_bytes", H5T_STD_U8LE, h5::table_spec({}, 4096), where);
    for (int i = 0; i < kProbeFieldCount; ++i) {
      const std::vector<hsize_t> dims = schema::probe_field_dims(i, layout);
      bool room = true;
      for (hsize_t d : dims)
        room = room && d > 0;
      if (!room) continue;
      const bool f64 = schema::probe_field(i).f64;
      fields[i] =
          h5::create_table(g.get(), schema::probe_field(i).name, f64 ? H5T_IEEE_F64LE : H5T_IEEE_F32LE,
                           probe_field_spec(dims, f64 ? 8 : 4), where);
    }
    last_shared_row.fill(-1);
  }
  {
    h5::Handle g = make_group(f, "summary", where);
    summary_t = schema::summary_type();
    summary = h5::create_table(g.get(), "rows", summary_t.get(), h5::table_spec({}, 16), where);
  }
  {
    h5::Handle g = make_group(f, "checkpoints", where);
    checkpoint_t = schema::checkpoint_type();
    checkpoint_index = h5::create_table(g.get(), "index", checkpoint_t.get(), h5::table_spec({}, 16), where);
  }
}

SessionWriter::SessionWriter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SessionWriter::SessionWriter(SessionWriter&&) noexcept = default;
SessionWriter& SessionWriter::operator=(SessionWriter&& other) noexcept {
  if (this != &other) {
    SessionWriter dying(std::move(*this));
    impl_ = std::move(other.impl_);
  }
  return *this;
}

SessionWriter::~SessionWriter() {
  if (!impl_ || impl_->closed) return;
  try {
    if (impl_->failure.empty()) impl_->commit(schema::kAbandoned);
  } catch (const std::exception&) {
    // Nothing to report to from a destructor; what was committed before stays readable.
  }
  impl_->close_datasets();
  impl_->file.reset();
}

SessionWriter SessionWriter::create(const fs::path& path, const Provenance& provenance,
                                    const SessionLayout& layout, const WriterOptions& options) {
  h5::silence_errors();
  auto impl = std::make_unique<Impl>();
  impl->path = path;
  impl->where = path.string();
  impl->layout = layout;
  impl->options = options;
  impl->session_id = random_hex(16);
  const std::string& where = impl->where;
  layout.validate(where);
  if (path.filename().empty()) throw Error(where, "expected a file name for the session");

  std::error_code ec;
  if (fs::exists(path, ec) && !options.overwrite)
    throw Error(where, "exists already; refusing to overwrite it (choose another name or ask to overwrite)");
  if (fs::is_directory(path, ec)) throw Error(where, "is a folder; expected a session file name");
  const fs::path dir = path.has_parent_path() ? path.parent_path() : fs::path(".");
  if (!fs::is_directory(dir, ec)) throw Error(where, "the folder " + dir.string() + " does not exist");
  remove_stale_temporaries(dir, path.filename().string());
  const fs::path tmp = dir / ("." + path.filename().string() + ".creating-" + std::to_string(::getpid()) +
                              "-" + random_hex(4));

  // Our own exclusive create first: its errno names the problem plainly (read-only folder, no space).
  const int fd = ::open(tmp.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0644);
  if (fd < 0) throw Error(where, std::string("cannot create the session file: ") + std::strerror(errno));
  ::close(fd);
  try {
    h5::Handle fapl = h5::plist_handle(h5::check_id(H5Pcreate(H5P_FILE_ACCESS), where, "cannot create"));
    // SWMR needs the newest format: checksummed metadata and flush-ordered writes.
    h5::check(H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_LATEST, H5F_LIBVER_LATEST), where, "cannot create");
    h5::check(H5Pset_file_locking(fapl.get(), true, true), where, "cannot create");
    impl->file = h5::file_handle(h5::check_id(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()),
                                              where, "cannot create the session file"));
    impl->build(provenance);
    h5::check(H5Fstart_swmr_write(impl->file.get()), where, "cannot start SWMR writing (disk full?)");
    impl->counts.flushes = 1;

    // Into place: without overwrite, a file that appeared meanwhile is not replaced.
    int moved = -1;
    if (!options.overwrite) {
      moved = ::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, path.c_str(), RENAME_NOREPLACE);
      if (moved != 0 && (errno == EINVAL || errno == ENOSYS)) {
        if (fs::exists(path, ec)) throw Error(where, "exists already; refusing to overwrite it");
        moved = ::rename(tmp.c_str(), path.c_str());
      }
    } else {
      moved = ::rename(tmp.c_str(), path.c_str());
    }
    if (moved != 0) {
      if (errno == EEXIST) throw Error(where, "exists already; refusing to overwrite it");
      throw Error(where, std::string("cannot move the new session into place: ") + std::strerror(errno));
    }
    fsync_directory(dir);
  } catch (...) {
    impl->close_datasets();
    impl->file.reset();
    fs::remove(tmp, ec);
    throw;
  }
  if (options.overwrite) fs::remove_all(checkpoint_folders::folder_of(path), ec);  // the old session's
  impl->last_commit = std::chrono::steady_clock::now();
  return SessionWriter(std::move(impl));
}

void SessionWriter::append_step(const std::string& run, const std::string& stage,
                                const snapshot::StepReport& report, double wall_seconds) {
  Impl& w = *impl_;
  w.usable();
  w.check_name(run, kMaxNameBytes, "run");
  w.check_name(stage, kMaxStageBytes, "stage");
  std::vector<double> parts(w.layout.part_names.size(), std::numeric_limits<double>::quiet_NaN());
  for (const auto& [name, value] : report.parts) {
    auto it = w.part_column.find(name);
    if (it == w.part_column.end())
      throw Error(w.where, "loss part '" + name + "' is not among the session layout's " +
                               std::to_string(w.part_column.size()) + " part names");
    parts[it->second] = value;
  }
  schema::StepRow row{};
  h5::put_name(row.run, sizeof row.run, run, w.where);
  h5::put_name(row.stage, sizeof row.stage, stage, w.where);
  schema::copy_step_fields(report, row);
  row.wall_seconds = wall_seconds;
  row.time = unix_now();
  w.writing([&] {
    const hsize_t at = static_cast<hsize_t>(w.counts.steps);
    if (w.parts)
      h5::write_rows(w.parts.get(), H5T_NATIVE_DOUBLE, at, 1, parts.data(), w.where + ": " + schema::kParts);
    h5::write_rows(w.steps.get(), w.step_t.get(), at, 1, &row, w.where + ": " + schema::kSteps);
    ++w.counts.steps;
    w.dirty = true;
    w.commit_if_due();
  });
}

void SessionWriter::append_eval(const std::string& run, const std::string& stage,
                                const snapshot::EvalReport& report) {
  Impl& w = *impl_;
  w.usable();
  w.check_name(run, kMaxNameBytes, "run");
  w.check_name(stage, kMaxStageBytes, "stage");
  std::vector<schema::EvalRow> rows(report.metrics.size());
  const double now = unix_now();
  for (size_t i = 0; i < rows.size(); ++i) {
    w.check_name(report.metrics[i].first, kMaxNameBytes, "evaluation metric");
    h5::put_name(rows[i].run, sizeof rows[i].run, run, w.where);
    h5::put_name(rows[i].stage, sizeof rows[i].stage, stage, w.where);
    h5::put_name(rows[i].name, sizeof rows[i].name, report.metrics[i].first, w.where);
    rows[i].step = report.step;
    rows[i].value = report.metrics[i].second;
    rows[i].time = now;
  }
  w.writing([&] {
    h5::write_rows(w.evals.get(), w.eval_t.get(), static_cast<hsize_t>(w.counts.evals), rows.size(),
                   rows.data(), w.where + ": " + schema::kEvals);
    w.counts.evals += static_cast<int64_t>(rows.size());
    w.commit(schema::kOpen);
  });
}

void SessionWriter::append_probe(const snapshot::ProbeSnapshot& s) {
  Impl& w = *impl_;
  w.usable();
  const std::string where =
      w.where + ": probe snapshot (" + s.run + ", " + s.stage + ", step " + std::to_string(s.step) + ")";
  w.check_name(s.run, kMaxNameBytes, "run");
  w.check_name(s.stage, kMaxStageBytes, "stage");
  schema::ProbeIndexRow row{};
  h5::put_name(row.run, sizeof row.run, s.run, w.where);
  h5::put_name(row.stage, sizeof row.stage, s.stage, w.where);
  row.step = s.step;
  row.tokens_seen = s.tokens_seen;
  row.layers = s.layers;
  row.heads = s.heads;
  row.time = unix_now();
  schema::count_snapshot(s, w.layout, row, where);
  std::array<std::vector<double>, kProbeFieldCount> values;
  std::array<bool, kProbeFieldCount> present{};
  for (int f = 0; f < kProbeFieldCount; ++f) {
    if (!w.fields[f]) {
      if (schema::carries_probe_field(f, s, w.layout))
        throw Error(where, std::string(schema::probe_field(f).name) +
                               ": the session layout leaves no room for it (a size in its shape is 0)");
      continue;
    }
    present[f] = schema::gather_probe_field(f, s, w.layout, values[f], where);
  }
  w.writing([&] {
    for (int f = 0; f < kProbeFieldCount; ++f) {
      row.rows[f] = -1;
      if (!present[f]) continue;
      if (schema::probe_field(f).shared && w.last_shared_row[f] >= 0 && values[f] == w.last_shared[f]) {
        row.rows[f] = w.last_shared_row[f];
        continue;
      }
      h5::write_rows(w.fields[f].get(), H5T_NATIVE_DOUBLE, static_cast<hsize_t>(w.field_rows[f]), 1,
                     values[f].data(), w.where + ": " + schema::probe_path(schema::probe_field(f).name));
      row.rows[f] = w.field_rows[f]++;
      if (schema::probe_field(f).shared) {
        w.last_shared[f] = std::move(values[f]);
        w.last_shared_row[f] = row.rows[f];
      }
    }
    row.tokens_row = -1;
    if (!s.tokens.empty()) {
      if (w.last_tokens_row >= 0 && s.tokens == w.last_tokens) {
        row.tokens_row = w.last_tokens_row;
      } else {
        std::string bytes;
        std::vector<int64_t> offsets{w.token_byte_count};
        for (const std::string& t : s.tokens) {
          bytes += t;
          offsets.push_back(w.token_byte_count + static_cast<int64_t>(bytes.size()));
        }
        h5::write_rows(w.token_bytes.get(), H5T_NATIVE_UINT8, static_cast<hsize_t>(w.token_byte_count),
                       bytes.size(), bytes.data(), w.where + ": " + schema::kTokenBytes);
        h5::write_rows(w.token_offsets.get(), H5T_NATIVE_INT64, static_cast<hsize_t>(w.token_sets), 1,
                       offsets.data(), w.where + ": " + schema::kTokenOffsets);
        w.token_byte_count += static_cast<int64_t>(bytes.size());
        row.tokens_row = w.token_sets++;
        w.last_tokens = s.tokens;
        w.last_tokens_row = row.tokens_row;
      }
    }
    h5::write_rows(w.probe_index.get(), w.probe_index_t.get(), static_cast<hsize_t>(w.counts.probes), 1, &row,
                   w.where + ": " + schema::kProbeIndex);
    ++w.counts.probes;
    w.commit(schema::kOpen);
  });
}

void SessionWriter::append_event(const std::string& kind, const nlohmann::json& detail) {
  Impl& w = *impl_;
  w.usable();
  const auto& kinds = event_kinds();
  if (std::find(kinds.begin(), kinds.end(), kind) == kinds.end()) {
    std::string known;
    for (const auto& k : kinds)
      known += (known.empty() ? "" : ", ") + k;
    throw Error(w.where, "event kind '" + kind + "': expected one of " + known);
  }
  const std::string text = detail.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  schema::EventRow row{};
  row.time = unix_now();
  h5::put_name(row.kind, sizeof row.kind, kind, w.where);
  row.detail_offset = w.event_bytes;
  row.detail_length = static_cast<int64_t>(text.size());
  w.writing([&] {
    h5::write_rows(w.event_detail.get(), H5T_NATIVE_UINT8, static_cast<hsize_t>(w.event_bytes), text.size(),
                   text.data(), w.where + ": " + schema::kEventDetail);
    w.event_bytes += static_cast<int64_t>(text.size());
    h5::write_rows(w.events.get(), w.event_t.get(), static_cast<hsize_t>(w.counts.events), 1, &row,
                   w.where + ": " + schema::kEvents);
    ++w.counts.events;
    w.commit(schema::kOpen);
  });
}

void SessionWriter::set_summary(const std::vector<snapshot::RunSummary>& rows) {
  Impl& w = *impl_;
  w.usable();
  std::vector<schema::SummaryRow> out(rows.size());
  const double now = unix_now();
  const int64_t generation = w.summary_generation + 1;
  for (size_t i = 0; i < rows.size(); ++i) {
    w.check_name(rows[i].run, kMaxNameBytes, "run");
    schema::SummaryRow& r = out[i];
    r.generation = generation;
    h5::put_name(r.run, sizeof r.run, rows[i].run, w.where);
    schema::copy_summary_fields(rows[i], r);
    r.time = now;
  }
  w.writing([&] {
    // Rows are only ever appended (SWMR readers may be reading); the newest generation is the table. An empty
    // table is one row of generation g with an empty run name.
    if (out.empty()) {
      schema::SummaryRow marker{};
      marker.generation = generation;
      marker.time = now;
      out.push_back(marker);
    }
    h5::write_rows(w.summary.get(), w.summary_t.get(), static_cast<hsize_t>(w.counts.summary_rows),
                   out.size(), out.data(), w.where + ": " + schema::kSummary);
    w.counts.summary_rows += static_cast<int64_t>(out.size());
    w.summary_generation = generation;
    w.commit(schema::kOpen);
  });
}

CheckpointInfo SessionWriter::write_checkpoint(const CheckpointRecord& record) {
  Impl& w = *impl_;
  w.usable();
  w.check_name(record.run, kMaxNameBytes, "run");
  w.check_name(record.stage, kMaxStageBytes, "stage");
  for (const auto& c : checkpoint_folders::list(w.path, w.session_id, false))
    w.next_checkpoint = std::max(w.next_checkpoint, c.sequence + 1);
  const CheckpointInfo info =
      checkpoint_folders::write(w.path, w.session_id, w.next_checkpoint, record, w.options.keep_checkpoints);
  ++w.next_checkpoint;
  schema::CheckpointRow row{};
  row.sequence = info.sequence;
  h5::put_name(row.run, sizeof row.run, record.run, w.where);
  h5::put_name(row.stage, sizeof row.stage, record.stage, w.where);
  row.step = record.step;
  row.time = info.time;
  h5::put_name(row.dir, sizeof row.dir, info.dir.filename().string(), w.where);
  h5::put_name(row.sha256, sizeof row.sha256, info.sha256, w.where);
  row.bytes = static_cast<int64_t>(info.bytes);
  w.writing([&] {
    h5::write_rows(w.checkpoint_index.get(), w.checkpoint_t.get(), static_cast<hsize_t>(w.counts.checkpoints),
                   1, &row, w.where + ": " + schema::kCheckpointIndex);
    ++w.counts.checkpoints;
    w.commit(schema::kOpen);
  });
  return info;
}

void SessionWriter::flush() {
  Impl& w = *impl_;
  w.usable();
  if (w.dirty) w.writing([&] { w.commit(schema::kOpen); });
}

void SessionWriter::close() {
  Impl& w = *impl_;
  w.usable();
  w.writing([&] {
    w.commit(schema::kComplete);
    w.closed = true;
    w.close_datasets();
    const bool ok = w.file.reset();
    if (!ok) h5::check(-1, w.where, "cannot close the session file (disk full?)");
  });
}

const fs::path& SessionWriter::path() const {
  return impl_->path;
}
const std::string& SessionWriter::session_id() const {
  return impl_->session_id;
}
const SessionLayout& SessionWriter::layout() const {
  return impl_->layout;
}

}  // namespace hedgelab::sessions
