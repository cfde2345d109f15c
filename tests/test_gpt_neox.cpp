// The teacher against Hugging Face transformers' own outputs (tests/fixtures/make_fixtures.py made them):
// logits, per-layer attention input/output/probabilities, greedy continuation and perplexity.
#include <ATen/ATen.h>
#include <torch/torch.h>

#include <QTest>
#include <nlohmann/json.hpp>

#include "core/io/checkpoint.h"
#include "core/io/safetensors.h"
#include "core/io/safetensors_torch.h"
#include "core/io/tokenizer.h"
#include "core/models/gpt_neox.h"
#include "core/ops/autocast.h"
#include "core/ops/rotary.h"
#include "tests/tensor_test_util.h"
#include "tests/test_util.h"

using namespace hedgelab;
using hedgelab::testing::fixtures_dir;

using hedgelab::testing::relative_error;

namespace {

struct Reference {
  std::map<std::string, at::Tensor> tensors;
  nlohmann::json scalars;
};

Reference read_reference(const std::filesystem::path& dir) {
  Reference r;
  auto file = io::SafetensorsFile::open(dir / "reference.safetensors");
  for (const auto& info : file.tensors()) {
    const bool integral = info.dtype == io::DType::I64 || info.dtype == io::DType::I32;
    r.tensors[info.name] = io::read_tensor(file, info, integral ? at::kLong : at::kFloat);
  }
  r.scalars = nlohmann::json::parse(hedgelab::testing::read_file(dir / "reference.json"));
  return r;
}

const char* kFixtures[] = {"gpt_neox_parallel", "gpt_neox_sequential", "gpt_neox_sharded_bf16",
                           "gpt_neox_fp16"};

}  // namespace

class TestGptNeoX : public QObject {
  Q_OBJECT
 private Q_SLOTS:
  void initTestCase() { torch::manual_seed(0); }

  void matches_transformers_logits_and_attention_data() {
    QTest::addColumn<QString>("name");
    for (const char* n : kFixtures)
      QTest::newRow(n) << QString(n);
  }
  void matches_transformers_logits_and_attention() {
    QFETCH(QString, name);
    const auto dir = fixtures_dir() / name.toStdString();
    auto folder = io::CheckpointFolder::open(dir);
    auto model = models::load_gpt_neox(folder);
    Reference ref = read_reference(dir);
    torch::NoGradGuard no_grad;
    auto out = model->forward(ref.tensors.at("input_ids"), {true, true});
    const double logits_err = relative_error(out.logits, ref.tensors.at("logits"));
    QVERIFY2(logits_err <= 1e-4, ("logits relative error " + std::to_string(logits_err)).c_str());
    for (int64_t i = 0; i < model->config().num_layers; ++i) {
      const std::string p = "layers." + std::to_string(i) + ".";
      QVERIFY(relative_error(out.attn_input[i], ref.tensors.at(p + "attn_input")) <= 1e-4);
      QVERIFY(relative_error(out.attn_output[i], ref.tensors.at(p + "attn_output")) <= 1e-4);
      const double probs_err =
          (out.attn_probs[i] - ref.tensors.at(p + "attn_probs")).abs().max().item<double>();
      QVERIFY2(probs_err <= 1e-5, ("attention probs error " + std::to_string(probs_err)).c_str());
    }
  }

  void greedy_generation_matches_transformers() {
    for (const char* n : kFixtures) {
      const auto dir = fixtures_dir() / n;
      auto model = models::load_gpt_neox(io::CheckpointFolder::open(dir));
      Reference ref = read_reference(dir);
      at::Tensor prompt_t = ref.tensors.at("greedy_prompt")[0].contiguous();
      std::vector<int64_t> prompt(prompt_t.data_ptr<int64_t>(),
                                  prompt_t.data_ptr<int64_t>() + prompt_t.numel());
      at::Tensor want_t = ref.tensors.at("greedy_ids")[0].contiguous();
      std::vector<int64_t> want(want_t.data_ptr<int64_t>(), want_t.data_ptr<int64_t>() + want_t.numel());
      models::GenerationOptions opts;
      opts.max_new_tokens = static_cast<int64_t>(want.size());
      QCOMPARE(models::generate(model, prompt, opts), want);
    }
  }

  void perplexity_protocol_matches_transformers() {
    const auto dir = fixtures_dir() / "gpt_neox_parallel";
    auto model = models::load_gpt_neox(io::CheckpointFolder::open(dir));
    Reference ref = read_reference(dir);
    at::Tensor stream = ref.tensors.at("ppl_stream");
    const int64_t T = ref.scalars.at("ppl_context").get<int64_t>();
    // Windows of T+1 at 0, T, 2T, ... that fit entirely: cut here by hand, independently of core/data.
    std::vector<at::Tensor> windows;
    for (int64_t s = 0; s + T + 1 <= stream.numel(); s += T)
      windows.push_back(stream.narrow(0, s, T + 1));
    auto result = models::perplexity(model, at::stack(windows), 2);
    QCOMPARE(result.tokens, ref.scalars.at("ppl_tokens").get<int64_t>());
    const double want = ref.scalars.at("ppl").get<double>();
    QVERIFY2(std::abs(result.perplexity - want) / want < 1e-5,
             ("ppl " + std::to_string(result.perplexity) + " vs " + std::to_string(want)).c_str());
  }

  void incremental_decoding_equals_full_forward() {
    auto model = models::load_gpt_neox(io::CheckpointFolder::open(fixtures_dir() / "gpt_neox_sequential"));
    torch::NoGradGuard no_grad;
    at::Tensor ids = at::randint(0, model->config().vocab_size, {2, 12}, at::kLong);
    at::Tensor full = model->forward(ids).logits;
    models::KvCache cache;
    std::vector<at::Tensor> pieces;
    pieces.push_back(model->forward(ids.narrow(1, 0, 5), {}, &cache).logits);  // a prefill of 5
    for (int64_t t = 5; t < 12; ++t)
      pieces.push_back(model->forward(ids.narrow(1, t, 1), {}, &cache).logits);
    QVERIFY(relative_error(at::cat(pieces, 1), full) <= 1e-5);
  }

  void sampling_is_seeded_and_top_k_one_is_greedy() {
    auto model = models::load_gpt_neox(io::CheckpointFolder::open(fixtures_dir() / "gpt_neox_parallel"));
    models::GenerationOptions o;
    o.max_new_tokens = 16;
    o.temperature = 1.0;
    o.seed = 7;
    const auto a = models::generate(model, {1, 2, 3}, o);
    QCOMPARE(models::generate(model, {1, 2, 3}, o), a);
    o.seed = 8;
    QVERIFY(models::generate(model, {1, 2, 3}, o) != a);
    o.top_k = 1;
    models::GenerationOptions greedy;
    greedy.max_new_tokens = 16;
    QCOMPARE(models::generate(model, {1, 2, 3}, o), models::generate(model, {1, 2, 3}, greedy));
  }

  void save_then_load_gives_same_logits() {
    hedgelab::testing::TempDir tmp;
    auto model = models::load_gpt_neox(io::CheckpointFolder::open(fixtures_dir() / "gpt_neox_sequential"));
    auto tok = io::Tokenizer::byte_level_vocabulary();
    models::save_gpt_neox(model, tok, tmp.path() / "saved");
    auto again = models::load_gpt_neox(io::CheckpointFolder::open(tmp.path() / "saved"));
    torch::NoGradGuard no_grad;
    at::Tensor ids = at::randint(0, model->config().vocab_size, {1, 10}, at::kLong);
    QVERIFY(at::equal(model->forward(ids).logits, again->forward(ids).logits));
    QVERIFY(again->config().tie_word_embeddings);
    QCOMPARE(again->config().rotary_dims(), model->config().rotary_dims());
  }

  void parameter_count_matches_the_modules() {
    for (const char* n : kFixtures) {
      auto model = models::load_gpt_neox(io::CheckpointFolder::open(fixtures_dir() / n));
      int64_t count = 0;
      for (const auto& p : model->parameters())
        count += p.numel();
      QCOMPARE(model->config().parameter_count(), count);
    }
  }

  // ops::FrozenCastCache's bookkeeping (on the CPU; the CUDA autocast path is test_cuda_run's): one copy per
  // weight and dtype, equal to the cast, handed out again until the weight changes in place, moves to other
  // storage or changes shape; outside CUDA autocast operand() is the weight itself; a copied cache is empty.
  void frozen_cast_cache_recasts_when_the_weight_changes() {
    ops::FrozenCastCache cache;
    at::Tensor w = at::randn({6, 5});  // [out, in]
    const at::Tensor a = cache.cast(w, at::kBFloat16);
    QVERIFY(at::equal(a, w.to(at::kBFloat16)));
    QVERIFY(cache.cast(w, at::kBFloat16).is_same(a));
    QVERIFY(cache.cast(w, at::kFloat).is_same(w));
    QCOMPARE(cache.size(), int64_t(1));
    const at::Tensor h = cache.cast(w, at::kHalf);
    QCOMPARE(cache.size(), int64_t(2));
    QVERIFY(cache.cast(w, at::kHalf).is_same(h));
    {
      at::NoGradGuard no_grad;
      w.add_(1.0);  // in place: the version moves
    }
    const at::Tensor b = cache.cast(w, at::kBFloat16);
    QVERIFY(!b.is_same(a));
    QVERIFY(at::equal(b, w.to(at::kBFloat16)));
    QCOMPARE(cache.size(), int64_t(2));
    w.set_data(at::randn({6, 5}));  // other storage, as Module::to does
    const at::Tensor c = cache.cast(w, at::kBFloat16);
    QVERIFY(!c.is_same(b));
    QVERIFY(at::equal(c, w.to(at::kBFloat16)));
    w.set_data(at::randn({3, 10}));  // another shape
    QVERIFY(at::equal(cache.cast(w, at::kBFloat16), w.to(at::kBFloat16)));
    const at::Tensor v = at::randn({4});
    QVERIFY(at::equal(cache.cast(v, at::kBFloat16), v.to(at::kBFloat16)));
    QCOMPARE(cache.size(), int64_t(3));
    QVERIFY(cache.operand(w).is_same(w));  // CPU: no CUDA autocast
    QVERIFY(!cache.operand(at::Tensor()).defined());
    const ops::FrozenCastCache copy = cache;
    QCOMPARE(copy.size(), int64_t(0));
    cache.clear();
    QCOMPARE(cache.size(), int64_t(0));
  }

  // The rotary table: base^(−2j/r) (against float64), made once per (r, base, device) and then shared.
  void rotary_frequencies_are_made_once_per_key() {
    using hedgelab::ops::rotary_inverse_frequencies;
    const at::Tensor a = rotary_inverse_frequencies(16, 10000.0, at::kCPU);  // [8]
    QCOMPARE(a.scalar_type(), at::kFloat);
    QCOMPARE(a.numel(), int64_t(8));
    const at::Tensor exact =
        at::pow(10000.0, -at::arange(0, 16, 2, at::TensorOptions().dtype(at::kDouble)) / 16.0);  // [8]
    QVERIFY(at::allclose(a.to(at::kDouble), exact, 1e-6, 0.0));
    QCOMPARE(rotary_inverse_frequencies(16, 10000.0, at::kCPU).data_ptr(), a.data_ptr());
    const at::Tensor other_base = rotary_inverse_frequencies(16, 500.0, at::kCPU);
    QVERIFY(other_base.data_ptr() != a.data_ptr());
    QVERIFY(other_base[1].item<float>() > a[1].item<float>());
    QCOMPARE(rotary_inverse_frequencies(8, 10000.0, at::kCPU).numel(), int64_t(4));
  }

  void config_reads_both_rotary_shapes() {
    nlohmann::json base = {{"model_type", "gpt_neox"}, {"vocab_size", 10},         {"hidden_size", 16},
                           {"num_hidden_layers", 1},   {"num_attention_heads", 2}, {"intermediate_size", 32}};
    auto older = base;
    older["rotary_pct"] = 0.5;
    older["rotary_emb_base"] = 500;
    auto newer = base;
    newer["rope_parameters"] = {
        {"rope_type", "default"}, {"partial_rotary_factor", 0.5}, {"rope_theta", 500}};
    for (const auto& j : {older, newer}) {
      auto c = models::GptNeoXConfig::from_json(j, "config.json");
      QCOMPARE(c.rotary_dims(), int64_t(4));
      QCOMPARE(c.rotary_base, 500.0);
      QVERIFY(c.use_parallel_residual);
    }
    auto defaults = models::GptNeoXConfig::from_json(base, "config.json");
    QCOMPARE(defaults.rotary_pct, 0.25);
    QCOMPARE(defaults.rotary_base, 10000.0);
    auto written =
        models::GptNeoXConfig::from_json(models::GptNeoXConfig::from_json(older, "c").to_json(), "c");
    QCOMPARE(written.rotary_dims(), int64_t(4));
  }

  void config_errors_name_file_and_field() {
    nlohmann::json base = {{"model_type", "gpt_neox"}, {"vocab_size", 10},         {"hidden_size", 16},
                           {"num_hidden_layers", 1},   {"num_attention_heads", 2}, {"intermediate_size", 32}};
    auto j = base;
    j["model_type"] = "llama";
    HL_EXPECT_ERROR(models::GptNeoXConfig::from_json(j, "m/config.json"), "m/config.json", "model_type",
                    "llama");
    j = base;
    j["rope_parameters"] = {{"rope_type", "yarn"}};
    HL_EXPECT_ERROR(models::GptNeoXConfig::from_json(j, "m/config.json"), "rope_type", "yarn");
    j = base;
    j["rope_scaling"] = {{"type", "dynamic"}, {"factor", 2.0}};
    HL_EXPECT_ERROR(models::GptNeoXConfig::from_json(j, "m/config.json"), "rope_scaling", "dynamic");
    j = base;
    j["hidden_act"] = "mish";
    HL_EXPECT_ERROR(models::GptNeoXConfig::from_json(j, "m/config.json"), "hidden_act", "mish");
    j = base;
    j["num_attention_heads"] = 3;
    HL_EXPECT_ERROR(models::GptNeoXConfig::from_json(j, "m/config.json"), "num_attention_heads", "divisible");
    j = base;
    j.erase("vocab_size");
    HL_EXPECT_ERROR(models::GptNeoXConfig::from_json(j, "m/config.json"), "vocab_size", "missing");
    j = base;
    j["hidden_size"] = "64";
    HL_EXPECT_ERROR(models::GptNeoXConfig::from_json(j, "m/config.json"), "hidden_size", "positive integer");
  }

  void tensor_of_wrong_shape_or_missing_is_named() {
    hedgelab::testing::TempDir tmp;
    auto model = models::load_gpt_neox(io::CheckpointFolder::open(fixtures_dir() / "gpt_neox_parallel"));
    auto tok = io::Tokenizer::byte_level_vocabulary();
    models::save_gpt_neox(model, tok, tmp.path() / "m");
    // Claim a wider model than the weights hold.
    auto cfg = nlohmann::json::parse(hedgelab::testing::read_file(tmp.path() / "m" / "config.json"));
    cfg["intermediate_size"] = 128;
    hedgelab::testing::write_file(tmp.path() / "m" / "config.json", cfg.dump());
    HL_EXPECT_ERROR(models::load_gpt_neox(io::CheckpointFolder::open(tmp.path() / "m")),
                    "dense_h_to_4h.weight", "shape");
    // Untie a tied checkpoint: embed_out.weight is then required and absent.
    auto seq = models::load_gpt_neox(io::CheckpointFolder::open(fixtures_dir() / "gpt_neox_sequential"));
    models::save_gpt_neox(seq, tok, tmp.path() / "s");
    cfg = nlohmann::json::parse(hedgelab::testing::read_file(tmp.path() / "s" / "config.json"));
    cfg["tie_word_embeddings"] = false;
    hedgelab::testing::write_file(tmp.path() / "s" / "config.json", cfg.dump());
    HL_EXPECT_ERROR(models::load_gpt_neox(io::CheckpointFolder::open(tmp.path() / "s")), "embed_out.weight",
                    "missing");
  }
};

QTEST_APPLESS_MAIN(TestGptNeoX)
#include "test_gpt_neox.moc"
