// Session speed on the demo shapes (L=4, H=4, Tp=55, P=32, m=32, N=64, d=128, W=4): a step appended and
// committed (what the run does after each step), a step appended between commits, a probe snapshot written,
// then a session of about --gb GB (snapshots every 20 steps) opened and listed, one snapshot read, one
// metric series read. Goals: open + list < 1 s, one snapshot < 100 ms. Usage: bench_sessions [--dir DIR]
// [--gb SIZE] [--keep]; with --keep the big session stays in DIR for a look. bench_sessions --read FILE only
// times the first open + list and snapshot read of FILE (cold after dropping the page cache), then warm ones.
// Prints one JSON line.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "sessions/session_reader.h"
#include "sessions/session_writer.h"
#include "tests/session_test_util.h"

using namespace hedgelab;
namespace fs = std::filesystem;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())))];
}

sessions::SessionLayout demo_layout() {
  return sessions::test::layout_of(/*L=*/4, /*H=*/4, /*Tp=*/55, /*m=*/32, /*P=*/32, /*N=*/64, /*d=*/128,
                                   /*W=*/4);
}

snapshot::Grid random_grid(int64_t rows, int64_t cols, std::mt19937& rng, bool causal = false) {
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  snapshot::Grid g(rows, cols);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      g.at(r, c) = causal && c > r ? 0.0f : u(rng);
  return g;
}

// A stage-2 snapshot of the demo shapes with values like the probes' (maps zero above the diagonal).
snapshot::ProbeSnapshot demo_snapshot(const sessions::SessionLayout& l, std::mt19937& rng) {
  snapshot::ProbeSnapshot s;
  s.run = "hedgemamba";
  s.stage = "stage2";
  s.layers = l.layers;
  s.heads = l.heads;
  for (int64_t t = 0; t < l.probe_tokens; ++t)
    s.tokens.push_back(" tok" + std::to_string(t));
  const int64_t Tp = l.probe_tokens, pairs = Tp * (Tp + 1) / 2;
  std::uniform_real_distribution<float> u(-4.0f, 4.0f);
  s.alignment.resize(static_cast<size_t>(l.layers), {0.9, 0.8});
  for (int64_t i = 0; i < l.layers * l.heads; ++i) {
    snapshot::HeadAttention a;
    a.teacher = random_grid(Tp, Tp, rng, true);
    a.student = random_grid(Tp, Tp, rng, true);
    for (int64_t k = 0; k < pairs; ++k) {
      a.teacher_logits.push_back(u(rng));
      a.feature_logits.push_back(u(rng));
    }
    a.teacher_entropy = 1.5;
    a.student_entropy = 2.0;
    a.row_kl = 0.3;
    a.spearman = 0.7;
    s.attention.push_back(std::move(a));
  }
  for (int64_t i = 0; i < l.layers; ++i) {
    snapshot::FeatureMapWeights f;
    snapshot::MixerInternals m;
    for (int64_t h = 0; h < l.heads; ++h) {
      f.q.push_back(random_grid(l.feature_dim, l.head_size, rng));
      f.k.push_back(random_grid(l.feature_dim, l.head_size, rng));
      m.final_state.push_back(random_grid(l.state_size, l.head_size, rng));
    }
    m.delta = random_grid(l.heads, Tp, rng);
    m.alpha = random_grid(l.heads, Tp, rng);
    m.gate = random_grid(Tp, l.width, rng);
    m.state_norm = random_grid(l.heads, Tp, rng);
    m.conv_x = random_grid(l.width, l.conv_width, rng);
    m.conv_k = random_grid(l.width, l.conv_width, rng);
    m.conv_q = random_grid(l.width, l.conv_width, rng);
    s.features.push_back(std::move(f));
    s.mixers.push_back(std::move(m));
  }
  return s;
}

snapshot::StepReport demo_step(int64_t step, std::mt19937& rng) {
  std::uniform_real_distribution<double> u(0.0, 1.0);
  snapshot::StepReport r;
  r.step = step;
  r.total_steps = 1000000;
  r.lr = 3e-4;
  r.total = u(rng);
  r.grad_norm = u(rng);
  r.tokens = 2048;
  r.tokens_seen = 2048 * step;
  r.tokens_per_second = 5000 + u(rng);
  r.parts = {{"ce", u(rng)}, {"kd", u(rng)}};
  for (int l = 0; l < 4; ++l)
    r.parts.emplace_back("align.layers." + std::to_string(l), u(rng));
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  fs::path dir = fs::temp_directory_path() / ("hedgelab-bench-sessions-" + std::to_string(::getpid()));
  double gigabytes = 1.0;
  bool keep = false;
  std::string read_only;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--read" && i + 1 < argc)
      read_only = argv[++i];
    else if (a == "--dir" && i + 1 < argc)
      dir = argv[++i];
    else if (a == "--gb" && i + 1 < argc)
      gigabytes = std::stod(argv[++i]);
    else if (a == "--keep")
      keep = true;
  }
  if (!read_only.empty()) {
    std::vector<double> open_list, read_snapshot;
    for (int r = 0; r < 3; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      sessions::SessionReader reader = sessions::SessionReader::open(read_only);
      open_list.push_back(seconds_since(t0));
      const int64_t n = reader.contents().snapshots;
      const auto t1 = std::chrono::steady_clock::now();
      if (n > 0) reader.probe(n / 2 + r);
      read_snapshot.push_back(seconds_since(t1));
    }
    const nlohmann::json j = {{"bench", "sessions_read"},
                              {"file", read_only},
                              {"bytes", fs::file_size(read_only)},
                              {"first_open_and_list_ms", open_list[0] * 1e3},
                              {"first_snapshot_ms", read_snapshot[0] * 1e3},
                              {"warm_open_and_list_ms", open_list[2] * 1e3},
                              {"warm_snapshot_ms", read_snapshot[2] * 1e3}};
    std::printf("%s\n", j.dump().c_str());
    return 0;
  }
  fs::create_directories(dir);
  const sessions::SessionLayout layout = demo_layout();
  std::mt19937 rng(1234);
  sessions::Provenance prov = sessions::make_provenance();
  prov.device = "cpu";
  prov.recipe = {{"preset", "demo"}};

  // Small costs: what the run thread pays.
  const fs::path small = dir / "small.h5";
  std::vector<double> step_commit, step_only, probe;
  {
    sessions::WriterOptions o;
    o.overwrite = true;
    sessions::SessionWriter w = sessions::SessionWriter::create(small, prov, layout, o);
    for (int64_t s = 1; s <= 2000; ++s) {
      const snapshot::StepReport r = demo_step(s, rng);
      const auto t0 = std::chrono::steady_clock::now();
      w.append_step("hedgemamba", "stage2", r, 0.1 * static_cast<double>(s));
      w.flush();
      step_commit.push_back(seconds_since(t0));
    }
    for (int64_t s = 2001; s <= 4000; ++s) {
      const snapshot::StepReport r = demo_step(s, rng);
      const auto t0 = std::chrono::steady_clock::now();
      w.append_step("hedgemamba", "stage2", r, 0.1 * static_cast<double>(s));  // commits every 0.5 s
      step_only.push_back(seconds_since(t0));
    }
    snapshot::ProbeSnapshot snap = demo_snapshot(layout, rng);
    for (int i = 0; i < 30; ++i) {
      snap.step = 4000 + i;
      snap.attention[0].student.at(1, 0) = static_cast<float>(i);
      const auto t0 = std::chrono::steady_clock::now();
      w.append_probe(snap);
      probe.push_back(seconds_since(t0));
    }
    w.close();
  }

  // A big session: snapshots every 20 steps until the file reaches the size asked for.
  const fs::path big = dir / "big.h5";
  const auto write_start = std::chrono::steady_clock::now();
  int64_t steps = 0, snapshots = 0;
  {
    sessions::WriterOptions o;
    o.overwrite = true;
    sessions::SessionWriter w = sessions::SessionWriter::create(big, prov, layout, o);
    std::vector<snapshot::ProbeSnapshot> variants;
    for (int i = 0; i < 4; ++i)
      variants.push_back(demo_snapshot(layout, rng));
    const uintmax_t target = static_cast<uintmax_t>(gigabytes * 1e9);
    w.append_event("start", {{"run", "hedgemamba"}});
    while (fs::file_size(big) < target) {
      for (int k = 0; k < 20; ++k) {
        w.append_step("hedgemamba", "stage2", demo_step(++steps, rng), 0.1 * static_cast<double>(steps));
        w.flush();
      }
      snapshot::ProbeSnapshot& s = variants[static_cast<size_t>(snapshots % 4)];
      s.step = steps;
      s.tokens_seen = steps * 2048;
      s.attention[0].teacher = variants[0].attention[0].teacher;  // the teacher's side stays shared
      w.append_probe(s);
      ++snapshots;
      if (steps % 2000 == 0) w.append_eval("hedgemamba", "stage2", {steps, {{"heldout_perplexity", 30.0}}});
    }
    w.append_event("finish", {{"run", "hedgemamba"}});
    w.close();
  }
  const double write_seconds = seconds_since(write_start);
  const double size_gb = static_cast<double>(fs::file_size(big)) / 1e9;

  // Reading: the page cache holds the file (it was just written); the numbers are the library's own work.
  std::vector<double> open_list, read_snapshot, read_metric;
  int64_t listed_snapshots = 0;
  for (int r = 0; r < 5; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    sessions::SessionReader reader = sessions::SessionReader::open(big);
    listed_snapshots = reader.contents().snapshots;
    open_list.push_back(seconds_since(t0));
  }
  {
    sessions::SessionReader reader = sessions::SessionReader::open(big);
    for (int r = 0; r < 10; ++r) {
      const int64_t index = (listed_snapshots * (2 * r + 1)) / 20;
      const auto t0 = std::chrono::steady_clock::now();
      const snapshot::ProbeSnapshot s = reader.probe(index);
      read_snapshot.push_back(seconds_since(t0));
      if (s.mixers.size() != 4) return 1;
    }
    for (int r = 0; r < 5; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      const sessions::Series series = reader.metric("hedgemamba", "stage2", "kd");
      read_metric.push_back(seconds_since(t0));
      if (static_cast<int64_t>(series.steps.size()) != steps) return 1;
    }
  }

  const auto ms = [](double s) { return std::round(s * 1e5) / 100.0; };
  nlohmann::json j = {
      {"bench", "sessions"},
      {"layout", "L=4 H=4 Tp=55 P=32 m=32 N=64 d=128 W=4, 14 loss parts"},
      {"append_step_and_commit_ms",
       {{"median", ms(median(step_commit))}, {"p90", ms(percentile(step_commit, 0.9))}}},
      {"append_step_between_commits_ms",
       {{"median", ms(median(step_only))}, {"p99", ms(percentile(step_only, 0.99))}}},
      {"append_probe_ms", {{"median", ms(median(probe))}, {"p90", ms(percentile(probe, 0.9))}}},
      {"big_session",
       {{"gb", std::round(size_gb * 1000) / 1000},
        {"steps", steps},
        {"snapshots", snapshots},
        {"bytes_per_snapshot", static_cast<int64_t>(size_gb * 1e9 / static_cast<double>(snapshots))},
        {"write_seconds", std::round(write_seconds * 10) / 10}}},
      {"open_and_list_ms", {{"median", ms(median(open_list))}, {"max", ms(percentile(open_list, 1.0))}}},
      {"read_one_snapshot_ms",
       {{"median", ms(median(read_snapshot))}, {"max", ms(percentile(read_snapshot, 1.0))}}},
      {"read_metric_series_ms", {{"median", ms(median(read_metric))}}}};
  std::printf("%s\n", j.dump().c_str());
  if (!keep) fs::remove_all(dir);
  return 0;
}
