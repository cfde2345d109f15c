// The recipe: every shipped preset loads and validates, JSON round-trips, unknown keys and values out of
// range are refused naming the source and JSON path, overrides are validated alike, steps follow from tokens.
#include <QTest>

#include <cmath>

#include <nlohmann/json.hpp>

#include "core/common/paths.h"
#include "core/distill/recipe.h"
#include "tests/test_util.h"

using namespace hedgelab;
using namespace hedgelab::distill;
using json = nlohmann::json;

namespace {

json raw_preset(const std::string& name) {
  return json::parse(testing::read_file(resources_dir() / "presets" / (name + ".json")));
}

}  // namespace

class TestRecipe : public QObject {
  Q_OBJECT
 private Q_SLOTS:
  void every_preset_loads_and_validates() {
    const auto names = available_presets();
    for (const char* expected : {"demo", "pythia-160m", "pythia-410m", "pythia-1b"})
      QVERIFY2(std::find(names.begin(), names.end(), expected) != names.end(), expected);
    for (const auto& name : names) {
      const RecipeConfig c = load_preset(name);
      QCOMPARE(c.name, name);
      c.validate(name);
      QVERIFY(!c.description.empty());
      QVERIFY(c.stage1_steps() > 0 && c.stage2_steps() > 0);
      // The paper's split: a light stage 1, a heavy stage 2.
      QVERIFY2(c.stage2.tokens >= 4 * c.stage1.tokens, name.c_str());
      // Every key of the file is one the recipe knows (a typo would have thrown), and every field is written.
      QCOMPARE(c.to_json().size(), raw_preset(name).size());
    }
  }

  void demo_preset_fits_a_small_cpu() {
    const RecipeConfig c = load_preset("demo");
    QCOMPARE(c.teacher, std::string("demo"));
    QCOMPARE(c.corpus, std::string("default"));
    QCOMPARE(c.device, std::string("cpu"));
    QCOMPARE(c.dtype, std::string("float32"));
    QCOMPARE(c.data.context, int64_t(128));  // the demo teacher's context
    QVERIFY(c.stage1.tokens >= 250'000 && c.stage1.tokens <= 400'000);
    QVERIFY(c.stage2.tokens >= 1'200'000 && c.stage2.tokens <= 2'000'000);
    QCOMPARE(c.tokens_per_step(), int64_t(8 * 1 * 128));
    QCOMPARE(c.stage1_steps(), int64_t(320));
    QCOMPARE(c.stage2_steps(), int64_t(1536));
    for (const char* gpu : {"pythia-160m", "pythia-410m", "pythia-1b"}) {
      const RecipeConfig g = load_preset(gpu);
      QCOMPARE(g.device, std::string("cuda"));
      QCOMPARE(g.dtype, std::string("bfloat16"));
      QCOMPARE(g.data.context, int64_t(2048));
      QCOMPARE(g.teacher, "EleutherAI/" + std::string(gpu));
      QVERIFY(g.stage1.tokens >= 100'000'000 && g.stage2.tokens >= 1'000'000'000);
    }
  }

  void json_round_trip() {
    for (const auto& name : available_presets()) {
      const RecipeConfig a = load_preset(name);
      const json j = a.to_json();
      const RecipeConfig b = RecipeConfig::from_json(j, "round trip");
      QVERIFY(b.to_json() == j);
    }
    RecipeConfig c;  // defaults, with every kind of field changed
    c.name = "edited";
    c.seed = 1234567890123;
    c.model.gate = false;
    c.model.feature_dim = 32;
    c.stage1.trainable = {"qkv", "feature_maps"};
    c.stage2.kd_target = "stage1";
    c.stage2.kd_temperature = 0.75;
    c.comparison.ablations = {"split_25_75", "no_conv"};
    const RecipeConfig d = RecipeConfig::from_json(c.to_json(), "edited");
    QVERIFY(d.to_json() == c.to_json());
    QCOMPARE(d.stage1.trainable, (std::vector<std::string>{"qkv", "feature_maps"}));  // order kept
    // Missing keys keep their defaults.
    const RecipeConfig e =
        RecipeConfig::from_json(json{{"name", "short"}, {"stage1", {{"tokens", 4096}}}}, "short");
    QCOMPARE(e.stage1.tokens, int64_t(4096));
    QCOMPARE(e.stage1.lr, RecipeConfig().stage1.lr);
    QCOMPARE(e.data.context, RecipeConfig().data.context);
  }

  void unknown_keys_are_refused_with_the_valid_ones() {
    json j = raw_preset("demo");
    j["stage2"]["kd_temprature"] = 2.0;
    HL_EXPECT_ERROR(RecipeConfig::from_json(j, "presets/demo.json"),
                    "presets/demo.json: stage2.kd_temprature", "unknown key", "valid keys of stage2",
                    "kd_temperature", "kd_target");
    json top = raw_preset("demo");
    top["stages"] = 2;
    HL_EXPECT_ERROR(RecipeConfig::from_json(top, "presets/demo.json"),
                    "presets/demo.json: stages: unknown key", "valid keys at the top level", "stage1",
                    "comparison", "teacher");
    json nested = raw_preset("demo");
    nested["model"]["mamba"] = {{"d_state", 16}};
    HL_EXPECT_ERROR(RecipeConfig::from_json(nested, "x.json"), "x.json: model.mamba", "valid keys of model",
                    "selective_decay");
    HL_EXPECT_ERROR(RecipeConfig::from_json(json::array(), "x.json"), "x.json", "expected a JSON object");
    HL_EXPECT_ERROR(RecipeConfig::from_json(json{{"data", 5}}, "x.json"), "x.json: data",
                    "expected an object, got 5");
  }

  void out_of_range_values_are_refused_naming_the_path_data() {
    QTest::addColumn<QString>("override_json");
    QTest::addColumn<QString>("path");
    QTest::addColumn<QString>("expected");
    auto row = [](const char* tag, const char* patch, const char* path, const char* expected) {
      QTest::newRow(tag) << QString(patch) << QString(path) << QString(expected);
    };
    row("name", R"({"name": ""})", "name", "expected a non-empty string, got \"\"");
    row("teacher", R"({"teacher": ""})", "teacher", "non-empty string");
    row("corpus type", R"({"corpus": 5})", "corpus", "expected a string, got 5");
    row("seed", R"({"seed": -1})", "seed", "expected an integer >= 0, got -1");
    row("device", R"({"device": "tpu"})", "device", R"(expected one of "cpu", "cuda", got "tpu")");
    row("dtype", R"({"dtype": "float16"})", "dtype", R"(one of "float32", "bfloat16")");
    row("threads", R"({"threads": -2})", "threads", "[0, 1024], got -2");
    row("context", R"({"data": {"context": 1}})", "data.context",
        "expected an integer in [2, 1048576], got 1");
    row("batch", R"({"data": {"batch_size": 0}})", "data.batch_size", "[1, 65536], got 0");
    row("accumulation", R"({"data": {"accumulation": 0}})", "data.accumulation", "got 0");
    row("accumulation type", R"({"data": {"accumulation": 1.5}})", "data.accumulation", "an integer in");
    row("heldout low", R"({"data": {"heldout_fraction": 0}})", "data.heldout_fraction", "(0, 0.5], got 0");
    row("heldout high", R"({"data": {"heldout_fraction": 0.9}})", "data.heldout_fraction", "got 0.9");
    row("eval_every", R"({"data": {"eval_every": -1}})", "data.eval_every", "got -1");
    row("eval_windows", R"({"data": {"eval_windows": 0}})", "data.eval_windows", "got 0");
    row("probe_every", R"({"data": {"probe_every": -3}})", "data.probe_every", "got -3");
    row("probe_text", R"({"data": {"probe_text": ""}})", "data.probe_text", "(data.probe_every > 0)");
    row("feature_map", R"({"model": {"feature_map": "relu"}})", "model.feature_map", "\"per_half_softmax\"");
    row("feature_dim", R"({"model": {"feature_dim": -1}})", "model.feature_dim", "[0, 4096], got -1");
    row("chunk", R"({"model": {"chunk": 0}})", "model.chunk", "[1, 4096], got 0");
    row("rotary", R"({"model": {"rotary": "yes"}})", "model.rotary", "expected true or false, got \"yes\"");
    row("conv_width", R"({"model": {"conv_width": 0}})", "model.conv_width", "[1, 64], got 0");
    row("normalization", R"({"model": {"normalization": "layernorm"}})", "model.normalization",
        "\"gated_rmsnorm\"");
    row("gate", R"({"model": {"gate": 1}})", "model.gate", "true or false");
    row("eps", R"({"model": {"eps": 0}})", "model.eps", "(0, 0.1], got 0");
    row("s1 tokens", R"({"stage1": {"tokens": -5}})", "stage1.tokens", "got -5");
    row("s1 lr zero", R"({"stage1": {"lr": 0}})", "stage1.lr", "expected a number in (0, 1], got 0");
    row("s1 lr big", R"({"stage1": {"lr": 2}})", "stage1.lr", "got 2");
    row("s1 min_lr", R"({"stage1": {"min_lr": 0.5}})", "stage1.min_lr", "(at most stage1.lr), got 0.5");
    row("s1 warmup", R"({"stage1": {"warmup_steps": -1}})", "stage1.warmup_steps", "got -1");
    row("s1 decay", R"({"stage1": {"weight_decay": 2}})", "stage1.weight_decay", "[0, 1], got 2");
    row("s1 clip", R"({"stage1": {"grad_clip": -1}})", "stage1.grad_clip", "got -1");
    row("s1 attn", R"({"stage1": {"attn_weight_loss": -0.1}})", "stage1.attn_weight_loss", "got -0.1");
    row("s1 trainable empty", R"({"stage1": {"trainable": []}})", "stage1.trainable",
        "(at least one), got []");
    row("s1 trainable unknown", R"({"stage1": {"trainable": ["feature_maps", "wings"]}})",
        "stage1.trainable[1]", "\"embeddings\", got \"wings\"");
    row("s1 trainable twice", R"({"stage1": {"trainable": ["qkv", "qkv"]}})", "stage1.trainable[1]",
        "each value once");
    row("s1 trainable type", R"({"stage1": {"trainable": "qkv"}})", "stage1.trainable",
        "a list of distinct values");
    row("s2 tokens", R"({"stage2": {"tokens": -1}})", "stage2.tokens", "got -1");
    row("no tokens", R"({"stage1": {"tokens": 0}, "stage2": {"tokens": 0}})", "stage2.tokens",
        "(stage1.tokens is 0)");
    row("s2 lr", R"({"stage2": {"lr": -1}})", "stage2.lr", "got -1");
    row("s2 min_lr", R"({"stage2": {"min_lr": 1}})", "stage2.min_lr", "(at most stage2.lr)");
    row("s2 ce", R"({"stage2": {"ce_weight": -1}})", "stage2.ce_weight", "[0, 1000], got -1");
    row("s2 no loss", R"({"stage2": {"ce_weight": 0, "kd_weight": 0}})", "stage2.kd_weight",
        "(stage2.ce_weight is 0)");
    row("s2 temperature", R"({"stage2": {"kd_temperature": -1}})", "stage2.kd_temperature",
        "expected a number > 0, got -1");
    row("s2 temperature type", R"({"stage2": {"kd_temperature": "2"}})", "stage2.kd_temperature",
        "got \"2\"");
    row("s2 align", R"({"stage2": {"align_weight": -1}})", "stage2.align_weight", "got -1");
    row("s2 target", R"({"stage2": {"kd_target": "student"}})", "stage2.kd_target", R"("teacher", "stage1")");
    row("runs empty", R"({"comparison": {"runs": []}})", "comparison.runs", "at least one");
    row("runs unknown", R"({"comparison": {"runs": ["teacher", "student"]}})", "comparison.runs[1]",
        "\"hedgemamba\"");
    row("ablation unknown", R"({"comparison": {"ablations": ["no_mlp"]}})", "comparison.ablations[0]",
        "\"split_75_25\"");
  }
  void out_of_range_values_are_refused_naming_the_path() {
    QFETCH(QString, override_json);
    QFETCH(QString, path);
    QFETCH(QString, expected);
    json j = raw_preset("demo");
    j.merge_patch(json::parse(override_json.toStdString()));
    const std::string where = "presets/demo.json: " + path.toStdString() + ": ";
    const std::string what = expected.toStdString();
    HL_EXPECT_ERROR(RecipeConfig::from_json(j, "presets/demo.json"), where.c_str(), what.c_str());
    // Overrides on a loaded recipe (what the CLI flags do) are refused alike.
    RecipeConfig c = load_preset("demo");
    const std::string flags_where = "--flags: " + path.toStdString() + ": ";
    HL_EXPECT_ERROR(apply_overrides(c, json::parse(override_json.toStdString()), "--flags"),
                    flags_where.c_str(), what.c_str());
    QVERIFY(c.to_json() == load_preset("demo").to_json());  // a refused override changes nothing
  }

  void validate_checks_values_set_in_memory() {
    RecipeConfig c = load_preset("demo");
    c.stage2.kd_temperature = -1;
    HL_EXPECT_ERROR(c.validate("run panel"),
                    "run panel: stage2.kd_temperature: expected a number > 0, got -1");
    c = load_preset("demo");
    c.stage1.lr = std::nan("");
    HL_EXPECT_ERROR(c.validate(), "recipe: stage1.lr", "got nan");
    c = load_preset("demo");
    c.comparison.runs = {"teacher", "teacher"};
    HL_EXPECT_ERROR(c.validate(), "recipe: comparison.runs[1]", "each value once");
  }

  void whole_numbers_written_as_floats_are_integers() {
    const RecipeConfig c = RecipeConfig::from_json(json::parse(R"({"stage1": {"tokens": 3e8}})"), "x");
    QCOMPARE(c.stage1.tokens, int64_t(300'000'000));
  }

  void unknown_preset_lists_the_available_ones() {
    HL_EXPECT_ERROR(load_preset("dem0"), "preset \"dem0\"", "unknown", "available: demo", "pythia-160m",
                    "pythia-1b", "pythia-410m");
  }

  void presets_load_from_a_path() {
    testing::TempDir dir;
    json j = raw_preset("demo");
    j["name"] = "mine";
    testing::write_file(dir / "mine.json", j.dump());
    QCOMPARE(load_preset((dir / "mine.json").string()).name, std::string("mine"));
    testing::write_file(dir / "broken.json", "{\"name\": ");
    HL_EXPECT_ERROR(load_preset((dir / "broken.json").string()), "broken.json", "not valid JSON");
    j["stage2"]["kd_temperature"] = 0;
    testing::write_file(dir / "bad.json", j.dump());
    HL_EXPECT_ERROR(load_preset((dir / "bad.json").string()), "bad.json: stage2.kd_temperature", "got 0");
    HL_EXPECT_ERROR(load_preset((dir / "absent.json").string()), "absent.json", "cannot be read");
  }

  void overrides_are_merged_and_validated() {
    RecipeConfig c = load_preset("pythia-160m");
    // bf16 is CUDA autocast: moving a GPU preset to the CPU needs float32 too, and says so.
    HL_EXPECT_ERROR(apply_overrides(c, json{{"device", "cpu"}}), "command line: dtype", "float32", "\"cpu\"");
    QCOMPARE(c.device, std::string("cuda"));  // a refused override leaves the recipe as it was
    apply_overrides(c, json{{"stage1", {{"tokens", 1000}}}, {"device", "cpu"}, {"dtype", "float32"}});
    QCOMPARE(c.stage1.tokens, int64_t(1000));
    QCOMPARE(c.device, std::string("cpu"));
    QCOMPARE(c.stage1.lr, load_preset("pythia-160m").stage1.lr);  // untouched fields stay
    QCOMPARE(c.stage2.lr, 3e-4);
    apply_overrides(c, json{{"stage2", {{"lr", nullptr}}}});  // null: back to the default
    QCOMPARE(c.stage2.lr, RecipeConfig().stage2.lr);
    HL_EXPECT_ERROR(apply_overrides(c, json{{"stage1", {{"tokens", -1}}}}), "command line: stage1.tokens",
                    "got -1");
    HL_EXPECT_ERROR(apply_overrides(c, json{{"stage1", {{"tokenz", 1}}}}), "command line: stage1.tokenz",
                    "unknown key");
    HL_EXPECT_ERROR(apply_overrides(c, json(5)), "command line", "expected a JSON object");
    QCOMPARE(c.stage1.tokens, int64_t(1000));
  }

  void steps_follow_from_tokens() {
    DataConfig d;
    d.context = 128;
    d.batch_size = 8;
    d.accumulation = 2;
    QCOMPARE(steps_for_tokens(0, d), int64_t(0));
    QCOMPARE(steps_for_tokens(1, d), int64_t(1));
    QCOMPARE(steps_for_tokens(2048, d), int64_t(1));
    QCOMPARE(steps_for_tokens(2049, d), int64_t(2));
    QCOMPARE(steps_for_tokens(2'000'000'000'000, d), int64_t(976'562'500));
    const RecipeConfig g = load_preset("pythia-160m");
    QCOMPARE(g.tokens_per_step(), int64_t(16 * 2 * 2048));
    QCOMPARE(g.stage1_steps(), int64_t((200'000'000 + 65535) / 65536));

    // The schedules span the stage's steps; a warmup longer than the stage is clamped to it.
    RecipeConfig c = load_preset("demo");
    QCOMPARE(c.stage1_schedule().total_steps, int64_t(320));
    QCOMPARE(c.stage1_schedule().warmup_steps, int64_t(20));
    QCOMPARE(c.stage2_schedule().peak_lr, c.stage2.lr);
    apply_overrides(c, json{{"stage1", {{"tokens", 2048}}}});
    QCOMPARE(c.stage1_steps(), int64_t(2));
    QCOMPARE(c.stage1_schedule().warmup_steps, int64_t(2));
  }

  void ablations_derive_recipes() {
    const RecipeConfig c = load_preset("demo");
    const int64_t total = c.stage1.tokens + c.stage2.tokens;
    for (const char* split : {"split_10_90", "split_25_75", "split_50_50", "split_75_25"}) {
      const RecipeConfig s = with_ablation(c, split);
      const int64_t share = std::stoll(std::string(split).substr(6, 2));
      QCOMPARE(s.stage1.tokens + s.stage2.tokens, total);
      QCOMPARE(s.stage1.tokens, total * share / 100);
      QCOMPARE(s.name, "demo+" + std::string(split));
    }
    QVERIFY(!with_ablation(c, "no_gate").model.gate);
    QVERIFY(!with_ablation(c, "no_conv").model.conv);
    QVERIFY(!with_ablation(c, "no_selective_decay").model.selective_decay);
    QVERIFY(with_ablation(c, "no_gate").model.conv);
    HL_EXPECT_ERROR(with_ablation(c, "no_mlp"), "ablation", "\"no_gate\"", "got \"no_mlp\"");
    QCOMPARE(valid_ablations().size(), size_t(7));
    QCOMPARE(valid_runs().size(), size_t(4));
  }

  void describe_is_one_paragraph() {
    const std::string text = load_preset("demo").describe();
    QVERIFY(text.find('\n') == std::string::npos);
    for (const char* fragment :
         {"\"demo\"", "teacher demo", "320 steps", "1536 steps", "feature_maps", "tau 2"})
      QVERIFY2(text.find(fragment) != std::string::npos, text.c_str());
  }
};

QTEST_APPLESS_MAIN(TestRecipe)
#include "test_recipe.moc"
