// Stage 1's model (docs/method.md §3): Hedgehog attention on a deep copy of the teacher, checked against a
// hand computation from the teacher's own rotated q, k, v, across the quadratic and chunked forms, and for
// the selection of trainable parameters.
#include <ATen/ATen.h>
#include <torch/torch.h>

#include <QTest>
#include <set>

#include "core/io/checkpoint.h"
#include "core/models/gpt_neox.h"
#include "core/models/hedgehog.h"
#include "core/ops/hedgehog_feature_map.h"
#include "core/ops/linear_attention.h"
#include "tests/tensor_test_util.h"
#include "tests/test_util.h"

using namespace hedgelab;
using hedgelab::testing::fixtures_dir;

using hedgelab::testing::relative_error;

namespace {

models::GptNeoXForCausalLM load(const char* name) {
  return models::load_gpt_neox(io::CheckpointFolder::open(fixtures_dir() / name));
}

at::Tensor random_ids(const models::GptNeoXConfig& c, int64_t B, int64_t T) {
  return torch::randint(c.vocab_size, {B, T}, torch::kLong);  // [B, T]
}

// Moves every feature map and gain away from the identity start, so checks cannot pass by symmetry.
void perturb(models::HedgehogLM& model, double scale) {
  torch::NoGradGuard no_grad;
  for (int64_t i = 0; i < model->config().num_layers; ++i) {
    auto a = model->attention(i);
    for (auto* map : {a->feature_map_q.get(), a->feature_map_k.get()}) {
      map->weight.add_(torch::randn_like(map->weight) * scale);
      map->bias.add_(torch::randn_like(map->bias) * scale);
    }
    a->output_gain.uniform_(0.5, 1.5);
  }
}

std::map<std::string, at::Tensor> snapshot(const torch::nn::Module& m) {
  std::map<std::string, at::Tensor> out;
  for (const auto& item : m.named_parameters())
    out[item.key()] = item.value().detach().clone();
  return out;
}

}  // namespace

class TestHedgehogModel : public QObject {
  Q_OBJECT
 private Q_SLOTS:
  void initTestCase() { torch::manual_seed(0); }

  void attention_weight_rows_sum_to_one() {
    auto teacher = load("gpt_neox_parallel");
    // ε = 0: a row sums to den/(den + ε), exactly 1 only without ε; the default ε may take up to ε/den off.
    for (double eps : {0.0, 1e-6}) {
      models::HedgehogOptions o;
      o.eps = eps;
      models::HedgehogLM model(teacher, o);
      perturb(model, 0.5);
      torch::NoGradGuard no_grad;
      const at::Tensor ids = random_ids(teacher->config(), 2, 21);
      models::HedgehogCaptureOptions capture;
      capture.attention_weights = true;
      const auto out = model->forward_with(ids, capture);
      QCOMPARE(static_cast<int64_t>(out.attn_weights.size()), teacher->config().num_layers);
      for (const at::Tensor& w : out.attn_weights) {
        QCOMPARE(w.sizes().vec(), (std::vector<int64_t>{2, teacher->config().num_heads, 21, 21}));
        const double row_err = (w.sum(-1) - 1.0).abs().max().item<double>();
        QVERIFY2(row_err <= (eps == 0.0 ? 1e-5 : 1e-3),
                 ("ā row sums off by " + std::to_string(row_err)).c_str());
        QCOMPARE(w.triu(1).abs().max().item<double>(), 0.0);  // causal
        QVERIFY(w.min().item<double>() >= 0.0);
      }
    }
  }

  void identity_maps_give_finite_logits_unlike_the_teachers() {
    for (const char* name : {"gpt_neox_parallel", "gpt_neox_sequential"}) {
      auto teacher = load(name);
      torch::NoGradGuard no_grad;
      const at::Tensor ids = random_ids(teacher->config(), 2, 17);
      const at::Tensor reference = teacher->forward(ids).logits;  // [B, T, V]
      for (auto kind : {ops::FeatureMapKind::kPerHalfSoftmax, ops::FeatureMapKind::kJointSoftmax,
                        ops::FeatureMapKind::kRawExp}) {
        models::HedgehogOptions o;
        o.kind = kind;
        models::HedgehogLM model(teacher, o);
        const at::Tensor logits = model->forward(ids);
        QCOMPARE(logits.sizes(), reference.sizes());
        QVERIFY(at::isfinite(logits).all().item<bool>());
        // Linear attention is not softmax attention: a student equal to its teacher means a wiring bug.
        const double diff = (logits - reference).abs().max().item<double>();
        QVERIFY2(diff > 1e-3, ("Hedgehog logits equal the teacher's: " + std::to_string(diff)).c_str());
      }
    }
  }

  void teacher_forced_output_matches_a_hand_computation() {
    auto teacher = load("gpt_neox_parallel");
    const auto teacher_weights = snapshot(*teacher);
    models::HedgehogOptions o;
    o.eps = 1e-6;
    models::HedgehogLM model(teacher, o);
    torch::NoGradGuard no_grad;
    const at::Tensor ids = random_ids(teacher->config(), 2, 19);
    models::TeacherCaptureOptions cap;
    cap.attention_io = true;
    cap.attention_qkv = true;
    const auto t = teacher->forward(ids, cap);
    {  // Stage 1's capture stops after the last attention: the same captures, no logits.
      models::TeacherCaptureOptions no_logits = cap;
      no_logits.logits = false;
      const auto s = teacher->forward(ids, no_logits);
      QVERIFY(t.logits.defined() && !s.logits.defined());
      QCOMPARE(s.attn_output.size(), t.attn_output.size());
      for (size_t l = 0; l < t.attn_output.size(); ++l) {
        QVERIFY(at::equal(s.attn_output[l], t.attn_output[l]));
        QVERIFY(at::equal(s.attn_input[l], t.attn_input[l]));
        QVERIFY(at::equal(s.attn_qkv[l].v, t.attn_qkv[l].v));
      }
    }
    for (double scale : {0.0, 0.5}) {
      perturb(model, scale);
      for (int64_t layer = 0; layer < teacher->config().num_layers; ++layer) {
        const at::Tensor a_in = t.attn_input[layer];  // [B, T, d]
        // By hand, from the teacher's own modules and the ops: φ of rotated q, k; quadratic attention.
        const auto qkv = teacher->attention_qkv(layer, a_in, 0);
        const auto att = model->attention(layer);
        const at::Tensor phi_q =
            ops::hedgehog_features(qkv.q, att->feature_map_q->weight, att->feature_map_q->bias, o.kind);
        const at::Tensor phi_k =
            ops::hedgehog_features(qkv.k, att->feature_map_k->weight, att->feature_map_k->bias, o.kind);
        const at::Tensor y = ops::linear_attention_quadratic(phi_q, phi_k, qkv.v, o.eps);  // [B, H, T, P]
        const at::Tensor expected =
            teacher->attention_merge_and_project(layer, y * att->output_gain.view({1, -1, 1, 1}));
        const at::Tensor got = model->teacher_forced_attention_output(layer, a_in);
        const double err = relative_error(got, expected);
        qInfo("layer %ld, perturbation %.1f: teacher-forced output relative error %.3g",
              static_cast<long>(layer), scale, err);
        QVERIFY2(err <= 1e-5, ("teacher-forced output relative error " + std::to_string(err)).c_str());
        // From the q, k, v the teacher's forward captured (what stage 1 uses while q/k/v are frozen).
        const double err_captured =
            relative_error(model->attention_output_from_qkv(layer, t.attn_qkv[layer]), expected);
        QVERIFY2(
            err_captured <= 1e-5,
            ("output from the captured q, k, v: relative error " + std::to_string(err_captured)).c_str());
      }
    }
    // The student owns a copy: the teacher is untouched, and the copy's weights started equal.
    for (const auto& item : teacher->named_parameters())
      QVERIFY(at::equal(item.value(), teacher_weights.at(item.key())));
    const auto copied = model->named_parameters();
    for (const auto& item : teacher->named_parameters()) {
      const at::Tensor* c = copied.find(item.key());
      QVERIFY2(c != nullptr, item.key().c_str());
      QVERIFY(at::equal(*c, item.value()));
      QVERIFY(c->data_ptr() != item.value().data_ptr());
    }
  }

  void chunked_and_quadratic_forward_agree() {
    for (const char* name : {"gpt_neox_parallel", "gpt_neox_sequential"}) {
      auto teacher = load(name);
      models::HedgehogOptions o;
      o.chunk = 8;  // T = 29 is not a multiple
      models::HedgehogLM model(teacher, o);
      perturb(model, 0.5);
      torch::NoGradGuard no_grad;
      const at::Tensor ids = random_ids(teacher->config(), 2, 29);
      models::HedgehogCaptureOptions quad;
      quad.quadratic = true;
      const double err = relative_error(model->forward(ids), model->forward_with(ids, quad).logits);
      qInfo("%s: chunked vs quadratic logits relative error %.3g", name, err);
      QVERIFY2(err <= 1e-5, ("chunked vs quadratic " + std::to_string(err)).c_str());
    }
  }

  void set_trainable_selects_the_intended_parameters() {
    auto teacher = load("gpt_neox_sequential");  // tied head: embed_in doubles as the LM head
    models::HedgehogLM model(teacher, models::HedgehogOptions{});
    const int64_t L = teacher->config().num_layers;
    auto trainable_names = [&] {
      std::set<std::string> names;
      for (const auto& item : model->named_parameters())
        if (item.value().requires_grad()) names.insert(item.key());
      return names;
    };
    QCOMPARE(model->set_trainable(models::Stage1Trainable{}), 5 * L);
    std::set<std::string> expected;
    for (int64_t i = 0; i < L; ++i) {
      const std::string p = "hedgehog." + std::to_string(i) + ".";
      for (const char* n : {"feature_map_q.weight", "feature_map_q.bias", "feature_map_k.weight",
                            "feature_map_k.bias", "output_gain"})
        expected.insert(p + n);
    }
    QVERIFY(trainable_names() == expected);
    QCOMPARE(static_cast<int64_t>(model->trainable_parameters().size()), 5 * L);
    QCOMPARE(static_cast<int64_t>(model->feature_map_parameters().size()), 4 * L);

    models::Stage1Trainable only_qkv_dense;
    only_qkv_dense.feature_maps = only_qkv_dense.output_gain = false;
    only_qkv_dense.qkv = only_qkv_dense.dense = true;
    QCOMPARE(model->set_trainable(only_qkv_dense), 4 * L);
    for (const auto& n : trainable_names())
      QVERIFY2(n.find(".attention.query_key_value.") != std::string::npos ||
                   n.find(".attention.dense.") != std::string::npos,
               n.c_str());

    auto all = models::Stage1Trainable::from_names(
        {"feature_maps", "output_gain", "qkv", "dense", "mlp_and_norms", "embeddings"});
    QCOMPARE(model->set_trainable(all), static_cast<int64_t>(model->parameters().size()));
    auto emb = models::Stage1Trainable::from_names({"embeddings"});
    QCOMPARE(model->set_trainable(emb), int64_t{1});  // tied: embed_in only
    QVERIFY(trainable_names() == std::set<std::string>{"gpt_neox.embed_in.weight"});
    HL_EXPECT_ERROR(models::Stage1Trainable::from_names({"feature_maps", "rotary"}, "stage1.trainable"),
                    "stage1.trainable", "rotary", "feature_maps");

    // The default selection trains: gradients reach exactly those parameters.
    model->set_trainable(models::Stage1Trainable{});
    const at::Tensor ids = random_ids(teacher->config(), 1, 12);
    models::TeacherCaptureOptions cap;
    cap.attention_io = true;
    at::Tensor a_in;
    {
      torch::NoGradGuard no_grad;
      a_in = teacher->forward(ids, cap).attn_input[1];
    }
    model->teacher_forced_attention_output(1, a_in).pow(2).mean().backward();
    for (const auto& item : model->named_parameters()) {
      const bool layer1 = item.key().rfind("hedgehog.1.", 0) == 0;
      QCOMPARE(item.value().grad().defined(), layer1);
      if (layer1) QVERIFY2(item.value().grad().abs().sum().item<double>() > 0.0, item.key().c_str());
    }
  }
};

QTEST_GUILESS_MAIN(TestHedgehogModel)
#include "test_hedgehog_model.moc"
