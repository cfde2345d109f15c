// Sessions (docs/session-format.md): every record kind round-trips exactly, a reader follows a live writer in
// this process and in another, a writer killed with SIGKILL at random moments leaves a file that opens with
// everything committed more than 2 s before the kill, torn checkpoints are never taken for complete ones, and
// bad files, read-only folders and full disks are one-line errors naming the file.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <QTest>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "sessions/checkpoints.h"
#include "sessions/session_reader.h"
#include "sessions/session_writer.h"
#include "tests/session_test_edit.h"
#include "tests/session_test_util.h"
#include "tests/test_util.h"

using namespace hedgelab;
using namespace hedgelab::sessions;
namespace fs = std::filesystem;
using snapshot::Grid;
using snapshot::ProbeSnapshot;

namespace {

SessionLayout small_layout() {
  return sessions::test::layout_of(/*L=*/2, /*H=*/2, /*Tp=*/5, /*m=*/3, /*P=*/4, /*N=*/6, /*d=*/8, /*W=*/3);
}

Provenance sample_provenance() {
  Provenance p = make_provenance();
  p.device = "cpu";
  p.recipe = {{"preset", "demo"}, {"stage1", {{"steps", 40}, {"lr", 1e-3}}}, {"note", "é ✓"}};
  p.teacher_dir = "/data/teacher";
  p.teacher_hash = "ab12";
  p.corpus_path = "/data/kjv.txt";
  p.corpus_hash = "cd34";
  p.seed = 18446744073709551557ull;  // above INT64_MAX: stored without loss
  return p;
}

// Deterministic, distinct values (splitmix64 of seed and index) in [-1, 1).
double value(uint64_t seed, uint64_t i) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + i + 0x632BE59BD9B4E019ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<double>(z >> 11) / 4503599627370496.0 - 1.0;
}

Grid grid(int64_t rows, int64_t cols, uint64_t seed) {
  Grid g(rows, cols);
  for (size_t i = 0; i < g.values.size(); ++i)
    g.values[i] = static_cast<float>(value(seed, i));
  return g;
}

std::vector<float> floats(int64_t n, uint64_t seed) {
  std::vector<float> v(static_cast<size_t>(n));
  for (size_t i = 0; i < v.size(); ++i)
    v[i] = static_cast<float>(value(seed, i));
  return v;
}

// A snapshot with every field filled; the teacher's side depends on `teacher_seed` only. Stage 1 has no mixer
// internals. Options leave out the gate, the convolutions or the alignment, as a model without them would.
ProbeSnapshot make_snapshot(const SessionLayout& l, const std::string& run, const std::string& stage,
                            int64_t step, uint64_t seed, uint64_t teacher_seed = 7, bool gate = true,
                            bool conv = true, bool alignment = true) {
  ProbeSnapshot s;
  s.run = run;
  s.stage = stage;
  s.step = step;
  s.tokens_seen = step * 1000 + 17;
  s.layers = l.layers;
  s.heads = l.heads;
  s.tokens = {"The", " Lord", "\xe2\x80", "", "\x9c \xc3\xa9"};  // a split UTF-8 character, an empty piece
  const int64_t Tp = l.probe_tokens, pairs = Tp * (Tp + 1) / 2;
  uint64_t k = seed * 1000;
  if (alignment)
    for (int64_t i = 0; i < l.layers; ++i)
      s.alignment.push_back({value(++k, 0), value(++k, 1)});
  for (int64_t i = 0; i < l.layers * l.heads; ++i) {
    snapshot::HeadAttention a;
    a.teacher = grid(Tp, Tp, teacher_seed * 100 + static_cast<uint64_t>(i));
    a.student = grid(Tp, Tp, ++k);
    a.teacher_entropy = value(teacher_seed, 500 + static_cast<uint64_t>(i));
    a.student_entropy = value(++k, 0);
    a.row_kl = value(++k, 0);
    a.spearman = value(++k, 0);
    a.teacher_logits = floats(pairs, teacher_seed * 100 + 50 + static_cast<uint64_t>(i));
    a.feature_logits = floats(pairs, ++k);
    s.attention.push_back(a);
  }
  for (int64_t i = 0; i < l.layers; ++i) {
    snapshot::FeatureMapWeights f;
    for (int64_t h = 0; h < l.heads; ++h) {
      f.q.push_back(grid(l.feature_dim, l.head_size, ++k));
      f.k.push_back(grid(l.feature_dim, l.head_size, ++k));
    }
    s.features.push_back(f);
  }
  if (stage == "stage2") {
    for (int64_t i = 0; i < l.layers; ++i) {
      snapshot::MixerInternals m;
      m.delta = grid(l.heads, Tp, ++k);
      m.alpha = grid(l.heads, Tp, ++k);
      if (gate) m.gate = grid(Tp, l.width, ++k);
      m.state_norm = grid(l.heads, Tp, ++k);
      for (int64_t h = 0; h < l.heads; ++h)
        m.final_state.push_back(grid(l.state_size, l.head_size, ++k));
      if (conv) {
        m.conv_x = grid(l.width, l.conv_width, ++k);
        m.conv_k = grid(l.width, l.conv_width, ++k);
        m.conv_q = grid(l.width, l.conv_width, ++k);
      }
      s.mixers.push_back(m);
    }
  }
  return s;
}

std::string diff_grid(const Grid& a, const Grid& b, const std::string& what) {
  if (a.rows != b.rows || a.cols != b.cols)
    return what + ": shape " + std::to_string(a.rows) + "x" + std::to_string(a.cols) + " vs " +
           std::to_string(b.rows) + "x" + std::to_string(b.cols);
  if (a.values.size() != b.values.size() ||
      std::memcmp(a.values.data(), b.values.data(), a.values.size() * sizeof(float)) != 0)
    return what + ": values differ";
  return "";
}

std::string diff_floats(const std::vector<float>& a, const std::vector<float>& b, const std::string& what) {
  if (a.size() != b.size() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) != 0)
    return what + ": values differ";
  return "";
}

// "" when the snapshots are equal field by field (floats bit for bit), else the first difference.
std::string diff_snapshots(const ProbeSnapshot& a, const ProbeSnapshot& b) {
  std::string d;
  const auto check = [&](const std::string& x) {
    if (d.empty()) d = x;
  };
  if (a.run != b.run || a.stage != b.stage || a.step != b.step || a.tokens_seen != b.tokens_seen ||
      a.layers != b.layers || a.heads != b.heads)
    return "header differs";
  if (a.tokens != b.tokens) return "tokens differ";
  if (a.alignment.size() != b.alignment.size()) return "alignment sizes differ";
  for (size_t i = 0; i < a.alignment.size(); ++i)
    if (a.alignment[i].teacher_forced != b.alignment[i].teacher_forced ||
        a.alignment[i].free_running != b.alignment[i].free_running)
      return "alignment " + std::to_string(i) + " differs";
  if (a.attention.size() != b.attention.size()) return "attention sizes differ";
  for (size_t i = 0; i < a.attention.size(); ++i) {
    const auto &x = a.attention[i], &y = b.attention[i];
    const std::string at = "attention " + std::to_string(i);
    check(diff_grid(x.teacher, y.teacher, at + " teacher"));
    check(diff_grid(x.student, y.student, at + " student"));
    check(diff_floats(x.teacher_logits, y.teacher_logits, at + " teacher_logits"));
    check(diff_floats(x.feature_logits, y.feature_logits, at + " feature_logits"));
    if (x.teacher_entropy != y.teacher_entropy || x.student_entropy != y.student_entropy ||
        x.row_kl != y.row_kl || x.spearman != y.spearman)
      check(at + ": statistics differ");
  }
  if (a.features.size() != b.features.size()) return "feature sizes differ";
  for (size_t i = 0; i < a.features.size(); ++i) {
    if (a.features[i].q.size() != b.features[i].q.size() || a.features[i].k.size() != b.features[i].k.size())
      return "feature " + std::to_string(i) + " head counts differ";
    for (size_t h = 0; h < a.features[i].q.size(); ++h) {
      check(diff_grid(a.features[i].q[h], b.features[i].q[h], "feature q"));
      check(diff_grid(a.features[i].k[h], b.features[i].k[h], "feature k"));
    }
  }
  if (a.mixers.size() != b.mixers.size()) return "mixer sizes differ";
  for (size_t i = 0; i < a.mixers.size(); ++i) {
    const auto &x = a.mixers[i], &y = b.mixers[i];
    check(diff_grid(x.delta, y.delta, "delta"));
    check(diff_grid(x.alpha, y.alpha, "alpha"));
    check(diff_grid(x.gate, y.gate, "gate"));
    check(diff_grid(x.state_norm, y.state_norm, "state_norm"));
    if (x.final_state.size() != y.final_state.size()) return "final_state sizes differ";
    for (size_t h = 0; h < x.final_state.size(); ++h)
      check(diff_grid(x.final_state[h], y.final_state[h], "final_state"));
    check(diff_grid(x.conv_x, y.conv_x, "conv_x"));
    check(diff_grid(x.conv_k, y.conv_k, "conv_k"));
    check(diff_grid(x.conv_q, y.conv_q, "conv_q"));
  }
  return d;
}

snapshot::StepReport make_step(int64_t step, const std::string& stage, int64_t layers = 2) {
  snapshot::StepReport r;
  const uint64_t s = static_cast<uint64_t>(step);
  r.step = step;
  r.total_steps = 100000;
  r.lr = 1e-3 * value(s, 1);
  r.total = value(s, 2);
  r.grad_norm = value(s, 3);
  r.tokens = 512;
  r.tokens_seen = 512 * step;
  r.tokens_per_second = 1000.0 + value(s, 4);
  if (stage == "stage1") {
    for (int64_t l = 0; l < layers; ++l) {
      r.parts.emplace_back("cosine.layers." + std::to_string(l), value(s, 10 + static_cast<uint64_t>(l)));
      r.parts.emplace_back("attn_ce.layers." + std::to_string(l), value(s, 20 + static_cast<uint64_t>(l)));
    }
  } else {
    r.parts.emplace_back("ce", value(s, 30));
    r.parts.emplace_back("kd", value(s, 31));
    for (int64_t l = 0; l < layers; ++l)
      r.parts.emplace_back("align.layers." + std::to_string(l), value(s, 40 + static_cast<uint64_t>(l)));
  }
  return r;
}

// The parts in layout order, as the reader returns them.
snapshot::StepReport in_layout_order(snapshot::StepReport r, const SessionLayout& l) {
  std::vector<std::pair<std::string, double>> ordered;
  for (const auto& name : l.part_names)
    for (const auto& p : r.parts)
      if (p.first == name) ordered.push_back(p);
  r.parts = ordered;
  return r;
}

bool same_step(const snapshot::StepReport& a, const snapshot::StepReport& b) {
  return a.step == b.step && a.total_steps == b.total_steps && a.lr == b.lr && a.total == b.total &&
         a.grad_norm == b.grad_norm && a.tokens == b.tokens && a.tokens_seen == b.tokens_seen &&
         a.tokens_per_second == b.tokens_per_second && a.parts == b.parts;
}

CheckpointRecord make_checkpoint(const std::string& run, const std::string& stage, int64_t step) {
  CheckpointRecord c;
  c.run = run;
  c.stage = stage;
  c.step = step;
  // Names out of alphabetical order and several dtypes: both must come back as given.
  c.tensors.emplace_back("z.weight", at::arange(12, at::kFloat).reshape({3, 4}) * static_cast<double>(step));
  c.tensors.emplace_back("a.bias", at::full({5}, static_cast<double>(step), at::kDouble));
  c.tensors.emplace_back("m.count", at::arange(7, at::kLong) + step);
  c.meta = {{"cursor", {{"position", step * 10}}}, {"trainer", {{"step", step}}}};
  return c;
}

std::string diff_checkpoints(const CheckpointRecord& a, const CheckpointRecord& b) {
  if (a.run != b.run || a.stage != b.stage || a.step != b.step) return "header differs";
  if (a.meta != b.meta) return "meta differs";
  if (a.tensors.size() != b.tensors.size()) return "tensor counts differ";
  for (size_t i = 0; i < a.tensors.size(); ++i) {
    if (a.tensors[i].first != b.tensors[i].first) return "tensor order differs at " + std::to_string(i);
    if (a.tensors[i].second.scalar_type() != b.tensors[i].second.scalar_type()) return "dtype differs";
    if (!a.tensors[i].second.equal(b.tensors[i].second)) return "values differ: " + a.tensors[i].first;
  }
  return "";
}

int64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

void say(int fd, const std::string& line) {
  const std::string text = line + "\n";
  ssize_t done = 0;
  while (done < static_cast<ssize_t>(text.size())) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - static_cast<size_t>(done));
    if (n <= 0) return;
    done += n;
  }
}

// Everything a reader can read, so that damage anywhere surfaces.
void read_everything(const fs::path& path) {
  SessionReader r = SessionReader::open(path);
  for (const auto& s : r.contents().series) {
    for (const auto& m : s.metrics)
      r.metric(s.run, s.stage, m);
    r.steps(s.run, s.stage);
    r.evals(s.run, s.stage);
  }
  r.events();
  r.summary();
  for (int64_t i = 0; i < r.contents().snapshots; ++i)
    r.probe(i);
}

// The writer side of the crash test: steps every ~5 ms with no explicit flush (the writer's own 0.5 s rule
// alone commits them), and with `extras` a probe snapshot every 20 steps and a checkpoint every 40 (both
// commit at once); each completed call reported on `fd` with its time.
[[noreturn]] void crash_child(const fs::path& path, int fd, bool extras) {
  try {
    const SessionLayout layout = small_layout();
    SessionWriter w = SessionWriter::create(path, sample_provenance(), layout);
    say(fd, "C " + std::to_string(now_ns()));
    w.append_event("start", {{"run", "crash"}});
    for (int64_t step = 1; step < 1000000; ++step) {
      w.append_step("crash", "stage1", make_step(step, "stage1"), 0.005 * static_cast<double>(step));
      say(fd, "S " + std::to_string(step) + " " + std::to_string(now_ns()));
      if (extras && step % 20 == 0) {
        w.append_probe(make_snapshot(layout, "crash", "stage1", step, static_cast<uint64_t>(step)));
        say(fd, "P " + std::to_string(step) + " " + std::to_string(now_ns()));
      }
      if (extras && step % 40 == 0) {
        w.write_checkpoint(make_checkpoint("crash", "stage1", step));
        say(fd, "K " + std::to_string(step) + " " + std::to_string(now_ns()));
      }
      ::usleep(5000);
    }
  } catch (const std::exception& e) {
    say(fd, std::string("E ") + e.what());
    ::_exit(3);
  }
  ::_exit(0);
}

struct CrashChild {
  pid_t pid = -1;
  int fd = -1;
  fs::path path;
  int64_t deadline = 0, killed_at = 0;
  std::string buffer;
  bool created = false, failed = false;
  std::string failure;
  std::vector<std::pair<int64_t, int64_t>> steps, probes, checkpoints;  // (step, time reported)

  void take(const char* data, size_t n) {
    buffer.append(data, n);
    size_t nl;
    while ((nl = buffer.find('\n')) != std::string::npos) {
      const std::string line = buffer.substr(0, nl);
      buffer.erase(0, nl + 1);
      long long a = 0, b = 0;
      if (line.rfind("C ", 0) == 0) {
        created = true;
      } else if (line.rfind("E ", 0) == 0) {
        failed = true;
        failure = line;
      } else if (std::sscanf(line.c_str() + 1, " %lld %lld", &a, &b) == 2) {
        auto& list = line[0] == 'S' ? steps : line[0] == 'P' ? probes : checkpoints;
        list.emplace_back(a, b);
      }
    }
  }
};

// Runs `body` in a forked child and returns its exit status; the child reports lines on the pipe.
int in_child(const std::function<int(int fd)>& body, std::string* output) {
  int fds[2];
  if (::pipe(fds) != 0) return -1;
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    int rc = 99;
    try {
      rc = body(fds[1]);
    } catch (const std::exception& e) {
      say(fds[1], std::string("uncaught: ") + e.what());
    }
    ::_exit(rc);
  }
  ::close(fds[1]);
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof buf)) > 0)
    output->append(buf, static_cast<size_t>(n));
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string line_starting(const std::string& output, const std::string& prefix) {
  size_t pos = 0;
  while (pos < output.size()) {
    size_t nl = output.find('\n', pos);
    if (nl == std::string::npos) nl = output.size();
    const std::string line = output.substr(pos, nl - pos);
    if (line.rfind(prefix, 0) == 0) return line.substr(prefix.size());
    pos = nl + 1;
  }
  return "";
}

void flip_byte(const fs::path& p, size_t offset) {
  std::string bytes = testing::read_file(p);
  bytes[offset] = static_cast<char>(bytes[offset] ^ 0x5a);
  testing::write_file(p, bytes);
}

}  // namespace

class TestSessions : public QObject {
  Q_OBJECT

 private Q_SLOTS:
  void initTestCase() {
    // No LibTorch thread pool: the crash test forks children that use LibTorch.
    at::set_num_threads(1);
  }

  void every_record_round_trips() {
    testing::TempDir dir;
    const fs::path path = dir / "run.h5";
    const SessionLayout layout = small_layout();
    const Provenance prov = sample_provenance();
    std::vector<ProbeSnapshot> snaps = {
        make_snapshot(layout, "hedgemamba", "stage1", 10, 1),
        make_snapshot(layout, "hedgemamba", "stage1", 20, 2),  // same teacher: stored once, shared
        make_snapshot(layout, "hedgemamba", "stage2", 5, 3),
        make_snapshot(layout, "hedgemamba", "stage2", 10, 4, 8),  // another teacher side
        make_snapshot(layout, "direct", "stage2", 10, 5, 8, false, false, false),
        make_snapshot(layout, "hedgemamba", "stage2", 15, 6, 7),  // back to the first teacher side
    };
    snaps[4].tokens.clear();
    snaps[5].tokens = {"a", "b", "c", "d", "e"};
    CheckpointRecord ck = make_checkpoint("hedgemamba", "stage2", 15);
    {
      SessionWriter w = SessionWriter::create(path, prov, layout);
      w.append_event("start", {{"run", "hedgemamba"}, {"preset", "demo"}});
      for (int64_t s = 1; s <= 30; ++s) {
        w.append_step("hedgemamba", "stage1", make_step(s, "stage1"), 0.1 * static_cast<double>(s));
        w.flush();
      }
      w.append_eval("hedgemamba", "stage1", {30, {{"heldout_perplexity", 42.5}, {"heldout_loss", 3.75}}});
      w.append_event("knob", {{"lr", 2e-4}, {"text", "bad \xff byte"}});
      for (int64_t s = 1; s <= 15; ++s)
        w.append_step("hedgemamba", "stage2", make_step(s, "stage2"), 10.0 + static_cast<double>(s));
      w.append_step("direct", "stage2", make_step(10, "stage2"), 99.0);
      w.append_eval("hedgemamba", "stage2", {15, {{"heldout_perplexity", 30.25}}});
      for (const auto& s : snaps)
        w.append_probe(s);
      w.set_summary({{"teacher", 20.0, 1.0, 0, 0, 0, 0.0, false}});
      w.set_summary({{"hedgemamba", 30.25, 1.5125, 15360, 7680, 45, 12.5, false},
                     {"direct", 55.0, 2.75, 0, 5120, 10, 3.0, true}});
      w.write_checkpoint(ck);
      w.append_event("finish", {{"run", "hedgemamba"}});
      w.close();
      HL_EXPECT_ERROR(w.flush(), "run.h5", "closed");
    }
    SessionReader r = SessionReader::open(path);
    const SessionContents& c = r.contents();
    QCOMPARE(c.schema_version, int64_t{kSchemaVersion});
    QCOMPARE(c.state, SessionState::Complete);
    QCOMPARE(c.provenance.app_version, prov.app_version);
    QCOMPARE(c.provenance.torch_version, prov.torch_version);
    QVERIFY(!c.provenance.hdf5_version.empty());
    QCOMPARE(c.provenance.device, prov.device);
    QVERIFY(c.provenance.recipe == prov.recipe);
    QCOMPARE(c.provenance.teacher_dir, prov.teacher_dir);
    QCOMPARE(c.provenance.teacher_hash, prov.teacher_hash);
    QCOMPARE(c.provenance.corpus_path, prov.corpus_path);
    QCOMPARE(c.provenance.corpus_hash, prov.corpus_hash);
    QCOMPARE(c.provenance.seed, prov.seed);
    QCOMPARE(c.provenance.start_time, prov.start_time);
    QCOMPARE(c.layout.layers, layout.layers);
    QCOMPARE(c.layout.conv_width, layout.conv_width);
    QVERIFY(c.layout.part_names == layout.part_names);
    QCOMPARE(c.steps, int64_t{46});
    QCOMPARE(c.evals, int64_t{3});
    QCOMPARE(c.events, int64_t{3});
    QCOMPARE(c.snapshots, int64_t{6});
    QVERIFY((c.runs == std::vector<std::string>{"hedgemamba", "direct"}));
    QCOMPARE(c.series.size(), size_t{3});

    // Steps: every column, parts by name, in the layout's order.
    const auto s1 = r.steps("hedgemamba", "stage1");
    QCOMPARE(s1.size(), size_t{30});
    for (int64_t s = 1; s <= 30; ++s)
      QVERIFY2(same_step(s1[s - 1], in_layout_order(make_step(s, "stage1"), layout)),
               std::to_string(s).c_str());
    const auto s2 = r.steps("hedgemamba", "stage2");
    QCOMPARE(s2.size(), size_t{15});
    QVERIFY(same_step(s2.back(), in_layout_order(make_step(15, "stage2"), layout)));
    const Series kd = r.metric("hedgemamba", "stage2", "kd");
    QCOMPARE(kd.steps.size(), size_t{15});
    QCOMPARE(kd.values[3], value(4, 31));
    QVERIFY(r.metric("hedgemamba", "stage1", "kd").steps.empty());  // stage 1 carries no kd
    const Series wall = r.metric("hedgemamba", "stage1", "wall_seconds");
    QCOMPARE(wall.values[9], 1.0);
    const Series tokens = r.metric("direct", "stage2", "tokens_seen");
    QCOMPARE(tokens.steps, std::vector<int64_t>{10});
    QCOMPARE(tokens.values, std::vector<double>{5120.0});
    const SeriesInfo* info = nullptr;
    for (const auto& s : c.series)
      if (s.run == "hedgemamba" && s.stage == "stage1") info = &s;
    QVERIFY(info);
    QCOMPARE(info->steps, int64_t{30});
    QCOMPARE(info->first_step, int64_t{1});
    QCOMPARE(info->last_step, int64_t{30});
    QCOMPARE(info->probes, int64_t{2});
    QVERIFY(std::find(info->metrics.begin(), info->metrics.end(), "cosine.layers.1") != info->metrics.end());
    QVERIFY(std::find(info->metrics.begin(), info->metrics.end(), "kd") == info->metrics.end());
    QVERIFY(same_step(info->last, in_layout_order(make_step(30, "stage1"), layout)));
    HL_EXPECT_ERROR(r.metric("hedgemamba", "stage1", "nope"), "run.h5", "nope");
    HL_EXPECT_ERROR(r.metric("nobody", "stage1", "lr"), "run.h5", "nobody");

    // Evaluations.
    const auto e1 = r.evals("hedgemamba", "stage1");
    QCOMPARE(e1.size(), size_t{1});
    QCOMPARE(e1[0].step, int64_t{30});
    QVERIFY((e1[0].metrics == std::vector<std::pair<std::string, double>>{{"heldout_perplexity", 42.5},
                                                                          {"heldout_loss", 3.75}}));
    const Series ppl = r.eval_metric("hedgemamba", "stage2", "heldout_perplexity");
    QCOMPARE(ppl.steps, std::vector<int64_t>{15});
    QCOMPARE(ppl.values, std::vector<double>{30.25});

    // Events, in order, with their detail.
    const auto events = r.events();
    QCOMPARE(events.size(), size_t{3});
    QCOMPARE(events[0].kind, std::string("start"));
    QCOMPARE(events[0].detail["preset"].get<std::string>(), std::string("demo"));
    QCOMPARE(events[1].kind, std::string("knob"));
    QCOMPARE(events[1].detail["lr"].get<double>(), 2e-4);
    QCOMPARE(events[2].kind, std::string("finish"));
    QVERIFY(events[0].time <= events[2].time && std::abs(events[2].time - unix_now()) < 60);

    // Probe snapshots, field by field.
    QCOMPARE(c.snapshot_list.size(), snaps.size());
    for (size_t i = 0; i < snaps.size(); ++i) {
      QCOMPARE(c.snapshot_list[i].step, snaps[i].step);
      QCOMPARE(c.snapshot_list[i].mixers, snaps[i].stage == "stage2");
      const std::string d = diff_snapshots(r.probe(static_cast<int64_t>(i)), snaps[i]);
      QVERIFY2(d.empty(), ("snapshot " + std::to_string(i) + ": " + d).c_str());
    }
    HL_EXPECT_ERROR(r.probe(6), "run.h5", "[0, 6)");

    // The summary set last.
    const auto summary = r.summary();
    QCOMPARE(summary.size(), size_t{2});
    QCOMPARE(summary[1].run, std::string("direct"));
    QCOMPARE(summary[1].perplexity, 55.0);
    QCOMPARE(summary[1].ratio_to_teacher, 2.75);
    QCOMPARE(summary[1].stage2_tokens, int64_t{5120});
    QCOMPARE(summary[1].steps, int64_t{10});
    QCOMPARE(summary[1].seconds, 3.0);
    QVERIFY(summary[1].stopped_early && !summary[0].stopped_early);
    QCOMPARE(summary[0].stage1_tokens, int64_t{15360});

    // The checkpoint, names, order, dtypes and meta intact.
    QCOMPARE(c.checkpoint_records, int64_t{1});
    QCOMPARE(c.checkpoints.size(), size_t{1});
    QVERIFY(c.checkpoints[0].complete);
    const auto loaded = load_last_complete_checkpoint(r);
    QVERIFY(loaded.has_value());
    const std::string d = diff_checkpoints(*loaded, ck);
    QVERIFY2(d.empty(), d.c_str());
  }

  void snapshots_that_do_not_fit_the_layout_are_refused() {
    testing::TempDir dir;
    const fs::path path = dir / "shapes.h5";
    SessionLayout layout = small_layout();
    SessionWriter w = SessionWriter::create(path, sample_provenance(), layout);
    ProbeSnapshot s = make_snapshot(layout, "r", "stage2", 1, 1);
    s.attention[3].student = grid(4, 5, 1);
    HL_EXPECT_ERROR(w.append_probe(s), "shapes.h5", "attention_student", "layer 1 head 1", "[5, 5]");
    s = make_snapshot(layout, "r", "stage2", 1, 1);
    s.mixers[1].gate = Grid();  // gate in layer 0 only
    HL_EXPECT_ERROR(w.append_probe(s), "shapes.h5", "mixer_gate", "all or none");
    s = make_snapshot(layout, "r", "stage2", 1, 1);
    s.attention.pop_back();
    HL_EXPECT_ERROR(w.append_probe(s), "shapes.h5", "attention", "0 or 4");
    s = make_snapshot(layout, "r", "stage2", 1, 1);
    s.tokens.pop_back();
    HL_EXPECT_ERROR(w.append_probe(s), "shapes.h5", "tokens");
    s = make_snapshot(layout, "r", "stage2", 1, 1);
    s.features[0].q[1].values.pop_back();
    HL_EXPECT_ERROR(w.append_probe(s), "shapes.h5", "malformed");
    snapshot::StepReport step = make_step(1, "stage1");
    step.parts.emplace_back("mystery", 1.0);
    HL_EXPECT_ERROR(w.append_step("r", "stage1", step, 0.0), "shapes.h5", "mystery");
    HL_EXPECT_ERROR(w.append_event("party", {}), "shapes.h5", "party", "start");
    HL_EXPECT_ERROR(w.append_step(std::string(80, 'x'), "stage1", make_step(1, "stage1"), 0.0), "shapes.h5",
                    "63 bytes");
    // Refusals write nothing and leave the writer usable.
    w.append_probe(make_snapshot(layout, "r", "stage2", 1, 1));
    w.close();
    SessionReader r = SessionReader::open(path);
    QCOMPARE(r.contents().snapshots, int64_t{1});
    QCOMPARE(r.contents().steps, int64_t{0});

    // A layout without convolutions has no room for conv taps.
    layout.conv_width = 0;
    SessionWriter w2 = SessionWriter::create(dir / "noconv.h5", sample_provenance(), layout);
    HL_EXPECT_ERROR(w2.append_probe(make_snapshot(small_layout(), "r", "stage2", 1, 1)), "noconv.h5",
                    "mixer_conv_x", "no room");
    w2.append_probe(make_snapshot(small_layout(), "r", "stage2", 1, 1, 7, true, false));
    w2.close();
    const std::string d = diff_snapshots(SessionReader::open(dir / "noconv.h5").probe(0),
                                         make_snapshot(small_layout(), "r", "stage2", 1, 1, 7, true, false));
    QVERIFY2(d.empty(), d.c_str());
  }

  void create_refuses_to_overwrite_unless_asked() {
    testing::TempDir dir;
    const fs::path path = dir / "once.h5";
    {
      SessionWriter w = SessionWriter::create(path, sample_provenance(), small_layout());
      w.append_step("a", "stage1", make_step(1, "stage1"), 0.0);
      w.write_checkpoint(make_checkpoint("a", "stage1", 1));
      w.close();
    }
    HL_EXPECT_ERROR(SessionWriter::create(path, sample_provenance(), small_layout()), "once.h5", "exists");
    QCOMPARE(SessionReader::open(path).contents().steps, int64_t{1});
    WriterOptions replace;
    replace.overwrite = true;
    SessionWriter w = SessionWriter::create(path, sample_provenance(), small_layout(), replace);
    w.close();
    SessionReader r = SessionReader::open(path);
    QCOMPARE(r.contents().steps, int64_t{0});
    QVERIFY(r.checkpoints().empty());  // the old session's checkpoints went with it
    QVERIFY(!load_last_complete_checkpoint(r).has_value());
    HL_EXPECT_ERROR(SessionWriter::create(dir / "missing" / "x.h5", sample_provenance(), small_layout()),
                    "x.h5", "does not exist");
  }

  void a_writer_dropped_without_close_leaves_an_abandoned_session() {
    testing::TempDir dir;
    const fs::path path = dir / "dropped.h5";
    {
      SessionWriter w = SessionWriter::create(path, sample_provenance(), small_layout());
      w.append_step("a", "stage1", make_step(1, "stage1"), 0.0);
    }
    SessionReader r = SessionReader::open(path);
    QCOMPARE(r.contents().state, SessionState::Abandoned);
    QCOMPARE(r.contents().steps, int64_t{1});
  }

  void a_reader_follows_a_live_writer_in_this_process() {
    testing::TempDir dir;
    const fs::path path = dir / "live.h5";
    WriterOptions slow;
    slow.flush_interval = 1000.0;  // only explicit flushes commit
    SessionWriter w = SessionWriter::create(path, sample_provenance(), small_layout(), slow);
    for (int64_t s = 1; s <= 3; ++s)
      w.append_step("a", "stage1", make_step(s, "stage1"), 0.0);
    SessionReader r = SessionReader::open(path);
    QCOMPARE(r.contents().state, SessionState::Live);
    QCOMPARE(r.contents().steps, int64_t{0});  // appended, not yet committed
    w.flush();
    r.refresh();
    QCOMPARE(r.contents().steps, int64_t{3});
    QCOMPARE(r.metric("a", "stage1", "total").values.back(), value(3, 2));
    w.append_probe(make_snapshot(small_layout(), "a", "stage1", 3, 9));
    r.refresh();
    QCOMPARE(r.contents().snapshots, int64_t{1});
    QVERIFY(diff_snapshots(r.probe(0), make_snapshot(small_layout(), "a", "stage1", 3, 9)).empty());
    w.close();
    r.refresh();
    QCOMPARE(r.contents().state, SessionState::Complete);
  }

  void a_reader_follows_a_live_writer_in_another_process() {
    testing::TempDir dir;
    const fs::path path = dir / "other.h5";
    int to_child[2], from_child[2];
    QVERIFY(::pipe(to_child) == 0 && ::pipe(from_child) == 0);
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::close(to_child[1]);
      ::close(from_child[0]);
      try {
        SessionWriter w = SessionWriter::create(path, sample_provenance(), small_layout());
        char go = 0;
        for (int64_t round = 0; round < 2; ++round) {
          for (int64_t s = round * 10 + 1; s <= round * 10 + 10; ++s)
            w.append_step("a", "stage1", make_step(s, "stage1"), 0.0);
          w.flush();
          say(from_child[1], "R");
          if (::read(to_child[0], &go, 1) != 1) ::_exit(4);
        }
        w.close();
        say(from_child[1], "D");
      } catch (const std::exception& e) {
        say(from_child[1], std::string("E ") + e.what());
      }
      ::_exit(0);
    }
    ::close(to_child[0]);
    ::close(from_child[1]);
    const auto wait_for = [&](char expected) {
      char line[512] = {};
      const ssize_t n = ::read(from_child[0], line, sizeof line - 1);
      return n >= 1 && line[0] == expected;
    };
    QVERIFY(wait_for('R'));
    SessionReader r = SessionReader::open(path);
    QCOMPARE(r.contents().state, SessionState::Live);
    QCOMPARE(r.contents().steps, int64_t{10});
    {
      // A second reader in this process keeps the file open (HDF5 shares it, caches included): a refresh may
      // then show no more than it saw, but what it shows is whole.
      SessionReader other = SessionReader::open(path);
      QVERIFY(::write(to_child[1], "g", 1) == 1);
      QVERIFY(wait_for('R'));
      r.refresh();
      QVERIFY(r.contents().steps == 10 || r.contents().steps == 20);
      QCOMPARE(r.metric("a", "stage1", "grad_norm").values.back(), value(r.contents().steps, 3));
      QCOMPARE(other.contents().steps, int64_t{10});
    }
    r.refresh();
    QCOMPARE(r.contents().steps, int64_t{20});
    QCOMPARE(r.metric("a", "stage1", "grad_norm").values[19], value(20, 3));
    QVERIFY(::write(to_child[1], "g", 1) == 1);
    QVERIFY(wait_for('D'));
    int status = 0;
    ::waitpid(pid, &status, 0);
    ::close(to_child[1]);
    ::close(from_child[0]);
    r.refresh();
    QCOMPARE(r.contents().state, SessionState::Complete);
  }

  void a_writer_killed_at_random_moments_leaves_a_readable_file() {
    testing::TempDir dir;
    std::mt19937 rng(20240501u);
    std::uniform_int_distribution<int64_t> jitter(0, 80'000'000);
    constexpr int kChildren = 20;
    int non_vacuous = 0,
        with_checkpoint = 0;  // children whose kill came 2 s after a step; after a checkpoint
    // Two batches of ten at once keep the whole test to a few seconds on two cores.
    for (int batch = 0; batch < 2; ++batch) {
      std::vector<CrashChild> children;
      for (int i = batch; i < kChildren; i += 2) {
        CrashChild c;
        c.path = dir / ("crash-" + std::to_string(i) + ".h5");
        int fds[2];
        QVERIFY(::pipe(fds) == 0);
        const pid_t pid = ::fork();
        if (pid == 0) {
          ::close(fds[0]);
          crash_child(c.path, fds[1], i % 4 >= 2);
        }
        ::close(fds[1]);
        ::fcntl(fds[0], F_SETFL, O_NONBLOCK);
        c.pid = pid;
        c.fd = fds[0];
        // Kill delays from 50 ms (inside create()) to 4.5 s, spread over the children.
        c.deadline =
            now_ns() + 50'000'000 + static_cast<int64_t>(i) * 4'450'000'000 / (kChildren - 1) + jitter(rng);
        children.push_back(std::move(c));
      }
      size_t alive = children.size();
      while (alive > 0) {
        std::vector<pollfd> polls;
        for (auto& c : children)
          polls.push_back({c.fd, POLLIN, 0});
        ::poll(polls.data(), polls.size(), 2);
        char buf[8192];
        for (auto& c : children) {
          ssize_t n;
          while ((n = ::read(c.fd, buf, sizeof buf)) > 0)
            c.take(buf, static_cast<size_t>(n));
          if (c.killed_at == 0 && now_ns() >= c.deadline) {
            ::kill(c.pid, SIGKILL);
            c.killed_at = now_ns();
            --alive;
          }
        }
      }
      for (auto& c : children) {
        int status = 0;
        ::waitpid(c.pid, &status, 0);
        char buf[8192];
        ssize_t n;
        while ((n = ::read(c.fd, buf, sizeof buf)) > 0)
          c.take(buf, static_cast<size_t>(n));
        ::close(c.fd);
        QVERIFY2(!c.failed, c.failure.c_str());
        QVERIFY2(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "the child ended before its kill");
      }

      for (const auto& c : children) {
        const std::string name = c.path.filename().string();
        if (!c.created && !fs::exists(c.path)) continue;  // killed inside create(): no session yet
        SessionReader r = SessionReader::open(c.path);
        const SessionContents& s = r.contents();
        QVERIFY2(s.state == SessionState::Crashed, (name + ": " + to_string(s.state)).c_str());
        // Every step whose append returned more than 2 s before the kill is there; nothing is invented.
        int64_t must_have = 0, reported = 0;
        for (const auto& [step, t] : c.steps) {
          reported = std::max(reported, step);
          if (t < c.killed_at - 2'000'000'000) must_have = std::max(must_have, step);
        }
        if (must_have > 0 && c.probes.empty())
          ++non_vacuous;  // steps only: the 0.5 s rule was put to the test
        const std::vector<snapshot::StepReport> rows =
            s.steps ? r.steps("crash", "stage1") : std::vector<snapshot::StepReport>{};
        QVERIFY2(static_cast<int64_t>(rows.size()) >= must_have,
                 (name + ": " + std::to_string(rows.size()) + " steps, expected at least " +
                  std::to_string(must_have))
                     .c_str());
        QVERIFY2(static_cast<int64_t>(rows.size()) <= reported + 1, name.c_str());
        for (size_t i = 0; i < rows.size(); ++i)
          QVERIFY2(same_step(rows[i], in_layout_order(make_step(static_cast<int64_t>(i) + 1, "stage1"),
                                                      small_layout())),
                   (name + ": step " + std::to_string(i + 1) + " differs").c_str());
        for (const auto& snap : s.snapshot_list) {
          const std::string d = diff_snapshots(
              r.probe(snap.index),
              make_snapshot(small_layout(), "crash", "stage1", snap.step, static_cast<uint64_t>(snap.step)));
          QVERIFY2(d.empty(), (name + ": " + d).c_str());
        }
        // A checkpoint reported finished is there (or a newer one), and whatever loads is whole.
        int64_t finished = 0;
        for (const auto& [step, t] : c.checkpoints)
          finished = std::max(finished, step);
        const auto last = load_last_complete_checkpoint(r);
        if (finished > 0) {
          QVERIFY2(last.has_value(), (name + ": no complete checkpoint").c_str());
          QVERIFY2(last->step >= finished, name.c_str());
          ++with_checkpoint;
        }
        if (last) {
          const std::string d = diff_checkpoints(*last, make_checkpoint("crash", "stage1", last->step));
          QVERIFY2(d.empty(), (name + ": " + d).c_str());
        }
        read_everything(c.path);
      }
    }
    // The deadlines make many kills land more than two seconds after steps of a steps-only child, and after
    // a checkpoint of the others.
    QVERIFY2(non_vacuous >= 4, std::to_string(non_vacuous).c_str());
    QVERIFY2(with_checkpoint >= 4, std::to_string(with_checkpoint).c_str());
  }

  void torn_checkpoints_are_never_taken_for_complete_ones() {
    testing::TempDir dir;
    const fs::path path = dir / "ck.h5";
    WriterOptions keep;
    keep.keep_checkpoints = 3;
    SessionWriter w = SessionWriter::create(path, sample_provenance(), small_layout(), keep);
    for (int64_t s = 10; s <= 50; s += 10)
      w.write_checkpoint(make_checkpoint("a", "stage1", s));
    w.flush();
    const fs::path folder = dir / "ck.h5.checkpoints";
    {
      SessionReader r = SessionReader::open(path);
      const auto all = r.checkpoints(true);
      QCOMPARE(all.size(), size_t{3});  // the newest three kept
      QCOMPARE(all.front().step, int64_t{30});
      for (const auto& c : all)
        QVERIFY2(c.complete, c.problem.c_str());
      QCOMPARE(r.contents().checkpoint_records, int64_t{5});  // the index remembers all five
    }
    const fs::path newest = folder / "000005-a-stage1-step-50";
    const fs::path middle = folder / "000004-a-stage1-step-40";
    QVERIFY(fs::is_directory(newest) && fs::is_directory(middle));

    // A newer folder whose tensors were cut short, one without meta.json, a temporary one left by a crash
    // and one from another session: none is complete.
    fs::copy(newest, folder / "000008-a-stage1-step-80");
    fs::resize_file(folder / "000008-a-stage1-step-80" / "tensors.safetensors", 100);
    fs::copy(newest, folder / "000007-a-stage1-step-70");
    fs::remove(folder / "000007-a-stage1-step-70" / "meta.json");
    fs::copy(newest, folder / ".tmp-9-12345-678");
    fs::copy(newest, folder / "000006-a-stage1-step-60");
    {
      std::string meta = testing::read_file(folder / "000006-a-stage1-step-60" / "meta.json");
      const size_t at = meta.find(w.session_id());
      QVERIFY(at != std::string::npos);
      meta[at] = meta[at] == 'a' ? 'b' : 'a';
      testing::write_file(folder / "000006-a-stage1-step-60" / "meta.json", meta);
    }
    // The newest good one flipped in place: same size, wrong hash.
    flip_byte(newest / "tensors.safetensors", testing::read_file(newest / "tensors.safetensors").size() - 3);

    SessionReader r = SessionReader::open(path);
    std::map<std::string, CheckpointInfo> by_name;
    for (const auto& c : r.checkpoints(false))
      by_name[c.dir.filename().string()] = c;
    QVERIFY(!by_name.at("000008-a-stage1-step-80").complete);
    QVERIFY(by_name.at("000008-a-stage1-step-80").problem.find("bytes") != std::string::npos);
    QVERIFY(!by_name.at("000007-a-stage1-step-70").complete);
    QVERIFY(!by_name.at(".tmp-9-12345-678").complete);
    QVERIFY(!by_name.at("000006-a-stage1-step-60").complete);
    QVERIFY(by_name.at("000005-a-stage1-step-50").complete);  // sizes match: only the hash tells
    for (const auto& c : r.checkpoints(true))
      if (c.dir == newest) QVERIFY(!c.complete && c.problem.find("SHA-256") != std::string::npos);
    HL_EXPECT_ERROR(load_checkpoint(by_name.at("000005-a-stage1-step-50")), "step-50", "SHA-256");
    HL_EXPECT_ERROR(load_checkpoint(by_name.at("000008-a-stage1-step-80")), "step-80", "not a complete");

    const auto last = load_last_complete_checkpoint(r);
    QVERIFY(last.has_value());
    QCOMPARE(last->step, int64_t{40});
    const std::string d = diff_checkpoints(*last, make_checkpoint("a", "stage1", 40));
    QVERIFY2(d.empty(), d.c_str());
    QVERIFY(!load_last_complete_checkpoint(r, "someone-else").has_value());

    // The next write clears the torn, temporary and foreign folders and keeps the newest complete ones.
    w.write_checkpoint(make_checkpoint("a", "stage1", 90));
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(folder))
      names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    // (Sequence 10: the leftover temporary folder had taken 9. The flipped step-50 still counts as complete
    // for retention, which checks sizes, not hashes.)
    std::string listed;
    for (const auto& n : names)
      listed += n + " ";
    QVERIFY2((names == std::vector<std::string>{"000004-a-stage1-step-40", "000005-a-stage1-step-50",
                                                "000010-a-stage1-step-90"}),
             listed.c_str());
    w.close();
  }

  void bad_files_are_one_line_errors_naming_the_file() {
    testing::TempDir dir;
    const fs::path good = dir / "good.h5";
    {
      const SessionLayout layout = small_layout();
      SessionWriter w = SessionWriter::create(good, sample_provenance(), layout);
      for (int64_t s = 1; s <= 300; ++s)
        w.append_step("a", "stage1", make_step(s, "stage1"), 0.0);
      for (int64_t s = 1; s <= 6; ++s)
        w.append_probe(
            make_snapshot(layout, "a", "stage2", s, static_cast<uint64_t>(s), 7 + static_cast<uint64_t>(s)));
      w.append_event("start", {{"x", 1}});
      w.close();
    }
    read_everything(good);
    const std::string bytes = testing::read_file(good);

    const fs::path half = dir / "half.h5";
    testing::write_file(half, bytes.substr(0, bytes.size() / 2));
    HL_EXPECT_ERROR(read_everything(half), "half.h5");
    const fs::path stub = dir / "stub.h5";
    testing::write_file(stub, bytes.substr(0, 2000));
    HL_EXPECT_ERROR(read_everything(stub), "stub.h5");
    const fs::path tail = dir / "tail.h5";
    testing::write_file(tail, bytes.substr(0, bytes.size() - 100));
    HL_EXPECT_ERROR(read_everything(tail), "tail.h5");

    const fs::path flipped = dir / "flipped.h5";
    testing::write_file(flipped, bytes);
    flip_byte(flipped, 20);  // inside the superblock, under its checksum
    HL_EXPECT_ERROR(SessionReader::open(flipped), "flipped.h5", "damaged");
    const fs::path signature = dir / "signature.h5";
    testing::write_file(signature, bytes);
    flip_byte(signature, 2);
    HL_EXPECT_ERROR(SessionReader::open(signature), "signature.h5", "not an HDF5 file");

    const fs::path text = dir / "notes.h5";
    testing::write_file(text, "step,loss\n1,2.5\n");
    HL_EXPECT_ERROR(SessionReader::open(text), "notes.h5", "not an HDF5 file");
    const fs::path empty = dir / "empty.h5";
    testing::write_file(empty, "");
    HL_EXPECT_ERROR(SessionReader::open(empty), "empty.h5", "not an HDF5 file");
    HL_EXPECT_ERROR(SessionReader::open(dir / "absent.h5"), "absent.h5", "no such file");
    HL_EXPECT_ERROR(SessionReader::open(dir.path()), "is a folder");

    const fs::path future = dir / "future.h5";
    testing::write_file(future, bytes);
    sessions::edit::set_int_attribute(future, "/", "schema_version", 999);
    HL_EXPECT_ERROR(SessionReader::open(future), "future.h5", "newer", "999", "reads up to 1");
    const fs::path zero = dir / "zero.h5";
    testing::write_file(zero, bytes);
    sessions::edit::set_int_attribute(zero, "/", "schema_version", 0);
    HL_EXPECT_ERROR(SessionReader::open(zero), "zero.h5", "schema_version 0");

    const fs::path missing = dir / "missing.h5";
    testing::write_file(missing, bytes);
    sessions::edit::remove_object(missing, "/metrics/evals");
    HL_EXPECT_ERROR(SessionReader::open(missing), "missing.h5", "missing dataset /metrics/evals");
    const fs::path no_field = dir / "nofield.h5";
    testing::write_file(no_field, bytes);
    sessions::edit::remove_object(no_field, "/probes/mixer_gate");
    HL_EXPECT_ERROR(SessionReader::open(no_field), "nofield.h5", "missing dataset /probes/mixer_gate");

    // Damage in the bulk: every byte of the second half flipped in turn would be slow; a stride finds the
    // compressed chunks and object headers there. Reading must fail cleanly or give the stored values, never
    // crash.
    const fs::path scattered = dir / "scattered.h5";
    int failures = 0;
    for (size_t at = bytes.size() / 2; at < bytes.size(); at += bytes.size() / 40) {
      std::string damaged = bytes;
      damaged[at] = static_cast<char>(damaged[at] ^ 0xff);
      testing::write_file(scattered, damaged);
      try {
        read_everything(scattered);
      } catch (const Error& e) {
        ++failures;
        const std::string m = e.what();
        QVERIFY2(m.find("scattered.h5") != std::string::npos && m.find('\n') == std::string::npos, m.c_str());
      }
    }
    QVERIFY(failures > 0);
  }

  void a_read_only_folder_is_an_error_and_loses_nothing() {
    testing::TempDir dir;
    const fs::path folder = dir / "locked";
    fs::create_directories(folder);
    const fs::path path = folder / "kept.h5";
    {
      SessionWriter w = SessionWriter::create(path, sample_provenance(), small_layout());
      for (int64_t s = 1; s <= 5; ++s)
        w.append_step("a", "stage1", make_step(s, "stage1"), 0.0);
      w.close();
    }
    fs::permissions(folder, fs::perms::owner_read | fs::perms::owner_exec | fs::perms::group_read |
                                fs::perms::group_exec | fs::perms::others_read | fs::perms::others_exec);
    fs::permissions(dir.path(), fs::perms::others_exec, fs::perm_options::add);
    std::string out;
    // Root ignores permissions, so the check runs as an unprivileged user when the test runs as root.
    const int rc = in_child(
        [&](int fd) {
          if (::geteuid() == 0 && (::setgid(65534) != 0 || ::setuid(65534) != 0)) return 77;
          if (::access(folder.c_str(), W_OK) == 0)
            return 78;  // the folder is writable: the test proves nothing
          for (bool overwrite : {false, true}) {
            WriterOptions o;
            o.overwrite = overwrite;
            try {
              SessionWriter::create(overwrite ? path : folder / "new.h5", sample_provenance(), small_layout(),
                                    o);
              return 1;
            } catch (const Error& e) {
              say(fd, std::string(overwrite ? "O " : "N ") + e.what());
            }
          }
          return 0;
        },
        &out);
    fs::permissions(folder, fs::perms::owner_all, fs::perm_options::add);
    if (rc == 77) QSKIP("cannot drop root privileges here to test a read-only folder");
    QVERIFY2(rc != 78, "the read-only folder is writable");
    QVERIFY2(rc == 0, out.c_str());
    const std::string fresh = line_starting(out, "N "), replace = line_starting(out, "O ");
    QVERIFY2(
        fresh.find("new.h5") != std::string::npos && fresh.find("Permission denied") != std::string::npos,
        fresh.c_str());
    QVERIFY2(replace.find("kept.h5") != std::string::npos, replace.c_str());
    SessionReader r = SessionReader::open(path);
    QCOMPARE(r.contents().steps, int64_t{5});
    QCOMPARE(r.contents().state, SessionState::Complete);
    QVERIFY(!fs::exists(folder / "new.h5"));
  }

  void a_full_disk_is_an_error_and_the_saved_file_still_opens() {
    testing::TempDir dir;
    const fs::path path = dir / "full.h5";
    std::string out;
    // RLIMIT_FSIZE stands in for a full disk without privileges: writes past the limit fail with EFBIG.
    const int rc = in_child(
        [&](int fd) {
          const SessionLayout layout = small_layout();
          SessionWriter w = SessionWriter::create(path, sample_provenance(), layout);
          for (int64_t s = 1; s <= 5; ++s)
            w.append_step("a", "stage1", make_step(s, "stage1"), 0.0);
          w.write_checkpoint(make_checkpoint("a", "stage1", 5));
          w.flush();
          say(fd, "committed 5");
          ::signal(SIGXFSZ, SIG_IGN);
          const rlimit limit{static_cast<rlim_t>(fs::file_size(path) + 48 * 1024), RLIM_INFINITY};
          if (::setrlimit(RLIMIT_FSIZE, &limit) != 0) return 5;
          CheckpointRecord big = make_checkpoint("a", "stage1", 6);
          big.tensors.emplace_back("big", at::zeros({40000}, at::kFloat));
          try {
            w.write_checkpoint(big);
            return 6;
          } catch (const Error& e) {
            say(fd, std::string("checkpoint ") + e.what());
          }
          for (int64_t s = 6; s < 100000; ++s) {
            try {
              w.append_step("a", "stage1", make_step(s, "stage1"), 0.0);
              if (s % 10 == 0)
                w.append_probe(make_snapshot(layout, "a", "stage1", s, static_cast<uint64_t>(s)));
              w.flush();
              say(fd, "committed " + std::to_string(s));
            } catch (const Error& e) {
              say(fd, std::string("error ") + e.what());
              try {
                w.append_step("a", "stage1", make_step(s + 1, "stage1"), 0.0);
                return 7;
              } catch (const Error& again) {
                say(fd, std::string("again ") + again.what());
              }
              return 0;
            }
          }
          return 8;
        },
        &out);
    QVERIFY2(rc == 0, (std::to_string(rc) + ": " + out).c_str());
    const std::string error = line_starting(out, "error ");
    QVERIFY2(error.find("full.h5") != std::string::npos, error.c_str());
    QVERIFY2(line_starting(out, "again ").find("earlier error") != std::string::npos, out.c_str());
    const std::string ck_error = line_starting(out, "checkpoint ");
    QVERIFY2(ck_error.find("step-6") != std::string::npos, ck_error.c_str());
    int64_t committed = 0;
    for (size_t pos = out.find("committed "); pos != std::string::npos; pos = out.find("committed ", pos + 1))
      committed = std::max<int64_t>(committed, std::stoll(out.substr(pos + 10)));
    QVERIFY(committed >= 5);

    SessionReader r = SessionReader::open(path);
    QVERIFY(r.contents().steps >= committed);
    const auto rows = r.steps("a", "stage1");
    for (size_t i = 0; i < rows.size(); ++i)
      QVERIFY(same_step(rows[i],
                        in_layout_order(make_step(static_cast<int64_t>(i) + 1, "stage1"), small_layout())));
    read_everything(path);
    // The checkpoint that did not fit left no folder; the one before it is whole.
    const auto all = r.checkpoints(true);
    QCOMPARE(all.size(), size_t{1});
    const auto last = load_last_complete_checkpoint(r);
    QVERIFY(last && last->step == 5);

    // Creating a session on a disk with no room: an error, and nothing left behind.
    out.clear();
    const fs::path tiny = dir / "tiny" / "no-room.h5";
    fs::create_directories(tiny.parent_path());
    const int rc2 = in_child(
        [&](int fd) {
          ::signal(SIGXFSZ, SIG_IGN);
          const rlimit limit{2048, RLIM_INFINITY};
          if (::setrlimit(RLIMIT_FSIZE, &limit) != 0) return 5;
          try {
            SessionWriter::create(tiny, sample_provenance(), small_layout());
            return 6;
          } catch (const Error& e) {
            say(fd, std::string("error ") + e.what());
          }
          return 0;
        },
        &out);
    QVERIFY2(rc2 == 0, out.c_str());
    QVERIFY2(line_starting(out, "error ").find("no-room.h5") != std::string::npos, out.c_str());
    QVERIFY(fs::is_empty(tiny.parent_path()));
  }
};

QTEST_GUILESS_MAIN(TestSessions)
#include "test_sessions.moc"
