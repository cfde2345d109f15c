// hedgelab-cli as a user runs it: every kind of bad input ends with one line naming the file and what is
// wrong, exit code 1, no crash; and the subcommands work end to end on the Hugging Face fixtures.
#include <QtCore/qfloat16.h>
#include <QProcess>
#include <QTest>
#include <nlohmann/json.hpp>

#include "tests/cli_test_util.h"
#include "tests/test_util.h"

using hedgelab::testing::CliResult;
using hedgelab::testing::fixtures_dir;
using hedgelab::testing::q;
using hedgelab::testing::read_file;
using hedgelab::testing::run_cli;
using hedgelab::testing::TempDir;
using hedgelab::testing::write_file;
namespace fs = std::filesystem;

namespace {

// A copy of a fixture checkpoint that a test may damage.
fs::path copy_fixture(const TempDir& tmp, const std::string& name) {
  const fs::path dst = tmp.path() / name;
  fs::copy(fixtures_dir() / name, dst, fs::copy_options::recursive);
  return dst;
}

}  // namespace

// Exit code 1, exactly one line on stderr, containing every fragment.
#define EXPECT_ONE_LINE_FAILURE(result, ...)                                                           \
  do {                                                                                                 \
    const CliResult& r_ = (result);                                                                    \
    QVERIFY2(r_.exit_code == 1,                                                                        \
             ("exit code " + std::to_string(r_.exit_code) + ", stderr: " + r_.err).c_str());           \
    QVERIFY2(!r_.err.empty() && r_.err.find('\n') == r_.err.size() - 1,                                \
             ("not one line: " + r_.err).c_str());                                                     \
    for (const char* f_ : {__VA_ARGS__})                                                               \
      QVERIFY2(r_.err.find(f_) != std::string::npos, ("'" + r_.err + "' lacks '" + f_ + "'").c_str()); \
  } while (0)

class TestCli : public QObject {
  Q_OBJECT
 private Q_SLOTS:
  void missing_checkpoint_folder() {
    EXPECT_ONE_LINE_FAILURE(run_cli({"info", "--checkpoint", "/nonexistent/model"}), "/nonexistent/model");
  }

  void truncated_safetensors() {
    TempDir tmp;
    const auto dir = copy_fixture(tmp, "gpt_neox_parallel");
    const std::string bytes = read_file(dir / "model.safetensors");
    write_file(dir / "model.safetensors", bytes.substr(0, bytes.size() / 2));
    EXPECT_ONE_LINE_FAILURE(run_cli({"info", "--checkpoint", q(dir)}), "model.safetensors");
  }

  void corrupted_safetensors_header() {
    TempDir tmp;
    const auto dir = copy_fixture(tmp, "gpt_neox_parallel");
    std::string bytes = read_file(dir / "model.safetensors");
    bytes[10] = '\x01';  // inside the JSON header
    write_file(dir / "model.safetensors", bytes);
    EXPECT_ONE_LINE_FAILURE(run_cli({"info", "--checkpoint", q(dir)}), "model.safetensors");
  }

  void missing_tensor() {
    TempDir tmp;
    const auto dir = copy_fixture(tmp, "gpt_neox_sequential");  // tied: holds no embed_out.weight
    auto cfg = nlohmann::json::parse(read_file(dir / "config.json"));
    cfg["tie_word_embeddings"] = false;
    write_file(dir / "config.json", cfg.dump());
    EXPECT_ONE_LINE_FAILURE(run_cli({"generate", "--checkpoint", q(dir), "--prompt", "a", "--max-new", "1"}),
                            "embed_out.weight", "missing");
  }

  void tensor_of_wrong_shape() {
    TempDir tmp;
    const auto dir = copy_fixture(tmp, "gpt_neox_parallel");
    auto cfg = nlohmann::json::parse(read_file(dir / "config.json"));
    cfg["intermediate_size"] = 96;
    write_file(dir / "config.json", cfg.dump());
    EXPECT_ONE_LINE_FAILURE(run_cli({"eval", "--checkpoint", q(dir), "--corpus", q(dir / "config.json")}),
                            "dense_h_to_4h.weight", "shape");
  }

  void unknown_architecture_and_rope_type() {
    TempDir tmp;
    const auto dir = copy_fixture(tmp, "gpt_neox_parallel");
    auto cfg = nlohmann::json::parse(read_file(dir / "config.json"));
    auto llama = cfg;
    llama["model_type"] = "llama";
    write_file(dir / "config.json", llama.dump());
    EXPECT_ONE_LINE_FAILURE(run_cli({"info", "--checkpoint", q(dir)}), "config.json", "model_type", "llama");
    auto yarn = cfg;
    yarn["rope_parameters"]["rope_type"] = "yarn";
    write_file(dir / "config.json", yarn.dump());
    EXPECT_ONE_LINE_FAILURE(run_cli({"info", "--checkpoint", q(dir)}), "config.json", "rope_type", "yarn");
  }

  void unsupported_tokenizer_model() {
    TempDir tmp;
    const auto dir = copy_fixture(tmp, "gpt_neox_parallel");
    auto tok = nlohmann::json::parse(read_file(dir / "tokenizer.json"));
    tok["model"]["type"] = "WordPiece";
    write_file(dir / "tokenizer.json", tok.dump());
    EXPECT_ONE_LINE_FAILURE(run_cli({"tokenize", "--checkpoint", q(dir), "--text", "hi"}), "tokenizer.json",
                            "WordPiece");
  }

  void non_utf8_text_corpus() {
    TempDir tmp;
    write_file(tmp / "latin1.txt", std::string("caf\xe9 au lait\n", 13));
    EXPECT_ONE_LINE_FAILURE(run_cli({"eval", "--checkpoint", q(fixtures_dir() / "gpt_neox_parallel"),
                                     "--corpus", q(tmp / "latin1.txt"), "--no-cache"}),
                            "latin1.txt", "UTF-8", "byte 3");
  }

  void pickle_checkpoints_are_refused() {
    TempDir tmp;
    fs::create_directories(tmp / "pickled");
    fs::copy_file(fixtures_dir() / "gpt_neox_parallel" / "config.json", tmp / "pickled" / "config.json");
    write_file(tmp / "pickled" / "pytorch_model.bin", "PK\x03\x04 not really a zip");
    EXPECT_ONE_LINE_FAILURE(run_cli({"info", "--checkpoint", q(tmp / "pickled")}), "pytorch_model.bin",
                            "arbitrary code", "safetensors");
    write_file(tmp / "model.pt", "x");
    EXPECT_ONE_LINE_FAILURE(run_cli({"eval", "--checkpoint", q(tmp / "model.pt")}), "model.pt",
                            "safetensors");
  }

  void usage_errors_exit_2() {
    auto r = run_cli({"eval", "--contxt", "5"});
    QCOMPARE(r.exit_code, 2);
    QVERIFY(r.err.find("--contxt") != std::string::npos);
    QCOMPARE(run_cli({"frobnicate"}).exit_code, 2);
    QCOMPARE(run_cli({"generate", "--checkpoint", "x", "--prompt", "a", "--max-new", "many"}).exit_code, 2);
  }

  void info_and_tokenize_on_fixtures() {
    auto r = run_cli({"info", "--checkpoint", q(fixtures_dir() / "gpt_neox_sharded_bf16"), "--json"});
    QCOMPARE(r.exit_code, 0);
    auto j = nlohmann::json::parse(r.out);
    QCOMPARE(j["layers"].get<int>(), 2);
    QCOMPARE(j["weights_dtype"].get<std::string>(), std::string("bfloat16"));
    QCOMPARE(j["rotary_dims"].get<int>(), 16);
    // Token ids for one of the tokenizers-library cases.
    auto cases = nlohmann::json::parse(read_file(fixtures_dir() / "bpe_tokenizer" / "cases.json"))["cases"];
    const auto& c = cases.at(3);
    r = run_cli({"tokenize", "--checkpoint", q(fixtures_dir() / "gpt_neox_parallel"), "--text",
                 QString::fromStdString(c["text"].get<std::string>()), "--json"});
    QCOMPARE(r.exit_code, 0);
    QCOMPARE(nlohmann::json::parse(r.out)["ids"], c["ids"]);
  }

  void pretrain_then_eval_and_generate() {
    TempDir tmp;
    std::string text;
    for (int i = 0; i < 200; ++i)
      text += "the quick brown fox jumps over the lazy dog " + std::to_string(i % 7) + "\n";
    write_file(tmp / "corpus.txt", text);
    auto r = run_cli({"pretrain",
                      "--corpus",
                      q(tmp / "corpus.txt"),
                      "--out",
                      q(tmp / "teacher"),
                      "--layers",
                      "1",
                      "--hidden",
                      "16",
                      "--heads",
                      "2",
                      "--context",
                      "16",
                      "--batch",
                      "4",
                      "--steps",
                      "30",
                      "--warmup",
                      "5",
                      "--lr",
                      "0.01",
                      "--eval-every",
                      "10",
                      "--eval-windows",
                      "8",
                      "--no-cache",
                      "--json"});
    QVERIFY2(r.exit_code == 0, r.err.c_str());
    auto result = nlohmann::json::parse(r.out);
    QVERIFY(result["best_heldout_perplexity"].get<double>() < 257.0);  // learned something beyond chance
    QVERIFY(fs::exists(tmp / "teacher" / "model.safetensors"));
    QVERIFY(fs::exists(tmp / "teacher" / "pretrain.json"));
    r = run_cli({"eval", "--checkpoint", q(tmp / "teacher"), "--corpus", q(tmp / "corpus.txt"), "--context",
                 "16", "--no-cache", "--json"});
    QVERIFY2(r.exit_code == 0, r.err.c_str());
    QVERIFY(nlohmann::json::parse(r.out)["perplexity"].get<double>() > 1.0);
    r = run_cli({"generate", "--checkpoint", q(tmp / "teacher"), "--prompt", "the quick", "--max-new", "8",
                 "--temperature", "0.7", "--seed", "3", "--json"});
    QVERIFY2(r.exit_code == 0, r.err.c_str());
    const auto again = run_cli({"generate", "--checkpoint", q(tmp / "teacher"), "--prompt", "the quick",
                                "--max-new", "8", "--temperature", "0.7", "--seed", "3", "--json"});
    QCOMPARE(nlohmann::json::parse(again.out)["ids"], nlohmann::json::parse(r.out)["ids"]);
  }

  void demo_runs_on_the_embedded_teacher_and_default_corpus() {
    TempDir tmp;
    auto r = run_cli({"demo", "--out", q(tmp / "demo"), "--max-windows", "4", "--json"});
    QVERIFY2(r.exit_code == 0, r.err.c_str());
    auto j = nlohmann::json::parse(r.out);
    // The shipped teacher must be far better than chance (257) on held-out text.
    QVERIFY2(j["heldout_perplexity"].get<double>() < 6.0, r.out.c_str());
    QCOMPARE(j["samples"].size(), size_t(3));
    QVERIFY(fs::exists(tmp / "demo" / "summary.json"));
    QVERIFY(fs::exists(tmp / "demo" / "samples.txt"));
    r = run_cli({"info", "--json"});
    QCOMPARE(nlohmann::json::parse(r.out)["parameters"].get<int64_t>(), int64_t(859136));
  }

  void distill_bad_inputs_fail_with_one_line() {
    TempDir tmp;
    EXPECT_ONE_LINE_FAILURE(run_cli({"distill", "--preset", "no-such-preset"}), "no-such-preset", "demo");
    nlohmann::json bad = {{"data", {{"context", -1}}}};
    write_file(tmp / "bad.json", bad.dump());
    EXPECT_ONE_LINE_FAILURE(run_cli({"distill", "--preset", q(tmp / "bad.json")}), "bad.json",
                            "data.context");
    write_file(tmp / "tiny.txt", "only a few words\n");
    nlohmann::json small = {{"teacher", (fixtures_dir() / "gpt_neox_parallel").string()},
                            {"corpus", (tmp / "tiny.txt").string()}};
    write_file(tmp / "small.json", small.dump());
    EXPECT_ONE_LINE_FAILURE(run_cli({"distill", "--preset", q(tmp / "small.json"), "--no-cache"}), "tiny.txt",
                            "fewer than");
    const auto llama = copy_fixture(tmp, "gpt_neox_parallel");
    auto cfg = nlohmann::json::parse(read_file(llama / "config.json"));
    cfg["model_type"] = "llama";
    write_file(llama / "config.json", cfg.dump());
    EXPECT_ONE_LINE_FAILURE(run_cli({"distill", "--teacher", q(llama)}), "model_type", "llama");
    write_file(tmp / "blocker", "a file");
    EXPECT_ONE_LINE_FAILURE(run_cli({"distill", "--out", q(tmp / "blocker" / "student")}), "blocker");
  }

  void distill_tiny_recipe_saves_a_student() {
    TempDir tmp;
    std::string text;
    for (int i = 0; i < 300; ++i)
      text += "The quick brown fox " + std::to_string(i % 13) + " jumps.\n";
    write_file(tmp / "corpus.txt", text);
    nlohmann::json recipe = {
        {"name", "tiny"},
        {"teacher", (fixtures_dir() / "gpt_neox_parallel").string()},
        {"corpus", (tmp / "corpus.txt").string()},
        {"data", {{"context", 16}, {"batch_size", 2}, {"eval_every", 4}, {"eval_windows", 2}}},
        {"model", {{"chunk", 8}}},
        {"stage1", {{"tokens", 128}, {"warmup_steps", 1}}},
        {"stage2", {{"tokens", 128}, {"warmup_steps", 1}}}};
    write_file(tmp / "tiny.json", recipe.dump());
    auto r = run_cli({"distill", "--preset", q(tmp / "tiny.json"), "--out", q(tmp / "student"), "--session",
                      q(tmp / "s.h5"), "--no-cache", "--json"});
    QVERIFY2(r.exit_code == 0, r.err.c_str());
    auto j = nlohmann::json::parse(r.out);
    QCOMPARE(j["runs"].size(), size_t(2));
    QCOMPARE(j["runs"][1]["run"].get<std::string>(), std::string("hedgemamba"));
    QCOMPARE(j["runs"][1]["steps"].get<int>(), 8);
    for (const char* f : {"config.json", "model.safetensors", "tokenizer.json"})
      QVERIFY2(fs::exists(tmp / "student" / f), f);
    QVERIFY(fs::exists(tmp / "s.h5"));
    // The saved student is a model eval and generate load: the same held-out perplexity as the run's.
    r = run_cli({"eval", "--checkpoint", q(tmp / "student"), "--corpus", q(tmp / "corpus.txt"), "--context",
                 "16", "--json", "--no-cache"});
    QVERIFY2(r.exit_code == 0, r.err.c_str());
    QCOMPARE(nlohmann::json::parse(r.out)["model"].get<std::string>(), std::string("hedge_mamba_student"));
    r = run_cli({"generate", "--checkpoint", q(tmp / "student"), "--prompt", "The quick", "--max-new", "6",
                 "--json"});
    QVERIFY2(r.exit_code == 0, r.err.c_str());
    const size_t n_ids = nlohmann::json::parse(r.out)["ids"].size();
    QVERIFY(n_ids >= 1 && n_ids <= 6);
    // A session is never overwritten.
    EXPECT_ONE_LINE_FAILURE(
        run_cli({"distill", "--preset", q(tmp / "tiny.json"), "--session", q(tmp / "s.h5")}), "s.h5",
        "exists");
  }

  void pretrain_into_unwritable_place_fails_cleanly() {
    TempDir tmp;
    write_file(tmp / "corpus.txt", std::string(4000, 'a'));
    write_file(tmp / "blocker", "a file where a folder should be");
    auto r = run_cli({"pretrain",
                      "--corpus",
                      q(tmp / "corpus.txt"),
                      "--out",
                      q(tmp / "blocker" / "teacher"),
                      "--layers",
                      "1",
                      "--hidden",
                      "16",
                      "--heads",
                      "2",
                      "--context",
                      "8",
                      "--batch",
                      "2",
                      "--steps",
                      "2",
                      "--eval-every",
                      "2",
                      "--no-cache"});
    EXPECT_ONE_LINE_FAILURE(r, "blocker");
  }
};

QTEST_GUILESS_MAIN(TestCli)
#include "test_cli.moc"
