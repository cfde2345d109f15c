// Redraw costs of the inspection views (issue 6) with their goals: scrubbing between the saved snapshots of
// a session (read the snapshot, redraw the attention, kernel and Mamba views; goal < 100 ms), a 512 × 512
// attention map pair (teacher, student and their difference; goal < 50 ms), and the ImGui inspector's
// frames per second while a demo run trains on the CPU in another thread (goal ≥ 30).
// The session is made first: a short demo run (stage 1 and stage 2, a probe every 4 steps) recorded to a
// temporary file. Usage (OpenGL needs a display): xvfb-run -a -s "-screen 0 1600x1000x24" bench_views
// [--seconds S] [--torch-threads N] [--screenshots DIR]. Prints one JSON line per measurement; with
// --screenshots, PNGs of the views at the session's last snapshot go to DIR.
#include <unistd.h>

#include <QApplication>
#include <QElapsedTimer>
#include <QEventLoop>
#include <QTimer>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "core/common/paths.h"
#include "core/common/threads.h"
#include "core/data/corpus.h"
#include "core/data/tokenizer_encoder.h"
#include "core/distill/recipe.h"
#include "core/io/checkpoint.h"
#include "core/io/tokenizer.h"
#include "core/models/gpt_neox.h"
#include "core/run/distill_run.h"
#include "sessions/session_reader.h"
#include "sessions/session_recorder.h"
#include "sessions/session_writer.h"
#include "views/attention_view.h"
#include "views/inspector_view.h"
#include "views/kernel_view.h"
#include "views/mamba_view.h"

using namespace hedgelab;

namespace {

struct Stats {
  double median = 0, p90 = 0, max = 0;
  size_t n = 0;
};

Stats stats(std::vector<double> v) {
  Stats s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  s.n = v.size();
  s.median = v[v.size() / 2];
  s.p90 = v[std::min(v.size() - 1, v.size() * 9 / 10)];
  s.max = v.back();
  return s;
}

nlohmann::json to_json(const Stats& s) {
  return {{"median_ms", s.median}, {"p90_ms", s.p90}, {"max_ms", s.max}, {"samples", s.n}};
}

double ms_since(const std::chrono::steady_clock::time_point& t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// Delivers the deferred replots, then paints the widget tree now: what the user waits for.
void redraw_now(QWidget& w) {
  QCoreApplication::processEvents();
  w.repaint();
}

// A snapshot with one head whose maps are Tp × Tp causal distributions.
std::shared_ptr<snapshot::ProbeSnapshot> big_snapshot(int64_t tp, int salt) {
  auto s = std::make_shared<snapshot::ProbeSnapshot>();
  s->run = "bench";
  s->stage = "stage1";
  s->layers = 1;
  s->heads = 1;
  for (int64_t t = 0; t < tp; ++t)
    s->tokens.push_back("t" + std::to_string(t));
  snapshot::HeadAttention a;
  a.teacher = snapshot::Grid(tp, tp);
  a.student = snapshot::Grid(tp, tp);
  for (int64_t t = 0; t < tp; ++t)
    for (int64_t j = 0; j <= t; ++j) {
      a.teacher.at(t, j) = static_cast<float>(std::exp(-0.05 * (t - j) * (1 + salt % 3)) / (t + 1));
      a.student.at(t, j) = static_cast<float>(1.0 / (t + 1));
    }
  s->attention.push_back(std::move(a));
  s->alignment.push_back({0.9, 0.8});
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  prefer_passive_openmp_wait(argv);
  QApplication app(argc, argv);
  double seconds = 5.0;
  int torch_threads = 1;  // the GUI keeps the other core of a 2-core machine
  QString screenshots;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--seconds") seconds = std::stod(argv[i + 1]);
    if (a == "--torch-threads") torch_threads = std::stoi(argv[i + 1]);
    if (a == "--screenshots") screenshots = QString::fromLocal8Bit(argv[i + 1]);
  }
  torch_threads = configure_threads(torch_threads);
  try {
    const distill::RecipeConfig base = distill::load_preset("demo");
    auto folder = io::CheckpointFolder::open(demo_teacher_dir());
    auto teacher = models::load_gpt_neox(folder);
    auto tok = io::Tokenizer::from_file(*folder.tokenizer_path());
    data::CorpusOptions co;
    co.heldout_fraction = base.data.heldout_fraction;
    auto corpus = data::load_corpus(data::default_corpus_path(), data::text_encoder_for(tok), co);
    run::ProbeText probe;
    for (auto id : tok.encode(base.data.probe_text)) {
      probe.ids.push_back(id);
      probe.pieces.push_back(tok.decode({id}));
    }

    // A session of a short demo run: 16 + 16 steps, a probe every 4.
    const auto dir =
        std::filesystem::temp_directory_path() / ("hedgelab-bench-views-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    const auto session = dir / "scrub.h5";
    {
      distill::RecipeConfig r = base;
      r.stage1.tokens = 16 * r.tokens_per_step();
      r.stage2.tokens = 16 * r.tokens_per_step();
      r.data.probe_every = 4;
      r.data.eval_every = 1000000;
      r.data.checkpoint_every = 0;
      auto writer = sessions::SessionWriter::create(
          session, sessions::make_provenance(),
          sessions::layout_for(r, teacher->config(), static_cast<int64_t>(probe.ids.size())));
      sessions::SessionRecorder recorder(writer, "hedgemamba");
      run::DistillRun run(r, teacher, corpus, probe, &recorder);
      run.run(r.stage1_steps() + r.stage2_steps() - 1);
      writer.close();
    }

    // Scrubbing: snapshot i read from the session and drawn by the three views, back and forth.
    auto reader = sessions::SessionReader::open(session);
    const int64_t n = reader.contents().snapshots;
    views::AttentionView attention;
    views::KernelView kernel;
    views::MambaView mamba;
    for (QWidget* w :
         {static_cast<QWidget*>(&attention), static_cast<QWidget*>(&kernel), static_cast<QWidget*>(&mamba)}) {
      w->resize(1200, 800);
      w->show();
    }
    std::vector<double> scrub_ms, read_ms, attention_ms, kernel_ms, mamba_ms;
    std::shared_ptr<const snapshot::ProbeSnapshot> last;
    for (int pass = 0; pass < 3; ++pass)
      for (int64_t k = 0; k < n; ++k) {
        const int64_t i = pass % 2 == 0 ? k : n - 1 - k;
        const auto t0 = std::chrono::steady_clock::now();
        auto snap = std::make_shared<const snapshot::ProbeSnapshot>(reader.probe(i));
        read_ms.push_back(ms_since(t0));
        auto t = std::chrono::steady_clock::now();
        attention.set_snapshot(snap);
        redraw_now(attention);
        attention_ms.push_back(ms_since(t));
        t = std::chrono::steady_clock::now();
        kernel.set_snapshot(snap);
        redraw_now(kernel);
        kernel_ms.push_back(ms_since(t));
        t = std::chrono::steady_clock::now();
        mamba.set_snapshot(snap);
        redraw_now(mamba);
        mamba_ms.push_back(ms_since(t));
        scrub_ms.push_back(ms_since(t0));
        last = snap;
      }
    if (!screenshots.isEmpty()) {
      attention.grab().save(screenshots + "/attention.png");
      attention.show_overview(true);
      redraw_now(attention);
      attention.grab().save(screenshots + "/attention_overview.png");
      kernel.grab().save(screenshots + "/kernel.png");
      mamba.grab().save(screenshots + "/mamba.png");
    }
    std::printf("%s\n", nlohmann::json({{"bench", "views_scrub"},
                                        {"snapshots", n},
                                        {"layers", last ? last->layers : 0},
                                        {"heads", last ? last->heads : 0},
                                        {"probe_tokens", last ? last->tokens.size() : 0},
                                        {"read", to_json(stats(read_ms))},
                                        {"read_and_redraw", to_json(stats(scrub_ms))},
                                        {"attention_view", to_json(stats(attention_ms))},
                                        {"kernel_view", to_json(stats(kernel_ms))},
                                        {"mamba_view", to_json(stats(mamba_ms))},
                                        {"goal_ms", 100}})
                            .dump()
                            .c_str());
    std::fflush(stdout);

    // A 512 × 512 map pair (and their difference) in the attention view.
    {
      views::AttentionView big;
      big.resize(1500, 700);
      big.show();
      const auto a = big_snapshot(512, 0), b = big_snapshot(512, 1);
      std::vector<double> ms;
      for (int k = 0; k < 12; ++k) {
        const auto t0 = std::chrono::steady_clock::now();
        big.set_snapshot(k % 2 ? a : b);
        redraw_now(big);
        ms.push_back(ms_since(t0));
      }
      std::printf("%s\n", nlohmann::json({{"bench", "views_attention_512"},
                                          {"redraw", to_json(stats(ms))},
                                          {"replot_ms_teacher", big.teacher_plot()->last_replot_ms()},
                                          {"goal_ms", 50}})
                              .dump()
                              .c_str());
      std::fflush(stdout);
    }

    // The inspector's frame rate, idle and while a demo run trains in another thread.
    views::InspectorView inspector;
    inspector.resize(900, 600);
    inspector.set_snapshot(last);
    inspector.set_frame_interval(1);
    inspector.show();
    auto measure_fps = [&](double s) {
      const int64_t f0 = inspector.frames();
      QElapsedTimer clock;
      clock.start();
      std::vector<double> frame_ms;
      auto c = QObject::connect(&inspector, &views::ImGuiHost::frame_drawn,
                                [&] { frame_ms.push_back(inspector.last_frame_ms()); });
      QEventLoop loop;
      QTimer::singleShot(static_cast<int>(s * 1000), &loop, &QEventLoop::quit);
      loop.exec();
      QObject::disconnect(c);
      const double fps = (inspector.frames() - f0) / (clock.nsecsElapsed() / 1e9);
      return std::make_pair(fps, stats(frame_ms));
    };
    measure_fps(0.5);  // warm-up
    const auto [idle_fps, idle_frames] = measure_fps(seconds);
    distill::RecipeConfig r = base;
    r.data.probe_every = 0;
    r.data.eval_every = 1000000;
    r.data.checkpoint_every = 0;
    std::atomic<int64_t> steps{0};
    struct Count : run::RunObserver {
      std::atomic<int64_t>* steps;
      void on_step(const std::string&, const snapshot::StepReport&) override { ++*steps; }
    } count;
    count.steps = &steps;
    run::DistillRun training(r, teacher, corpus, probe, &count);
    std::thread worker([&] { training.run(); });
    while (steps.load() < 1)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    snapshot::KnobEdit edit;
    edit.lr = 0.005;
    training.request_knobs(edit);  // as the inspector's knob would
    const int64_t steps_before = steps.load();
    const auto [busy_fps, busy_frames] = measure_fps(seconds);
    if (!screenshots.isEmpty()) inspector.render_frame().save(screenshots + "/inspector.png");
    const int64_t trained = steps.load() - steps_before;
    training.stop();
    worker.join();
    std::printf("%s\n",
                nlohmann::json({{"bench", "views_inspector_fps"},
                                {"idle_fps", idle_fps},
                                {"idle_frame_cpu", to_json(idle_frames)},
                                {"training_fps", busy_fps},
                                {"training_frame_cpu", to_json(busy_frames)},
                                {"training_steps_during", trained},
                                {"seconds", seconds},
                                {"torch_threads", torch_threads},
                                {"hardware_threads", std::thread::hardware_concurrency()},
                                {"gl_renderer_platform", QGuiApplication::platformName().toStdString()},
                                {"goal_fps", 30}})
                    .dump()
                    .c_str());
    std::filesystem::remove_all(dir);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_views: %s\n", e.what());
    return 1;
  }
  return 0;
}
