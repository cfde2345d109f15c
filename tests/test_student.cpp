// The stage-2 student (docs/method.md §4): fresh from stage 1 it computes the stage-1 model; step-by-step
// decoding with O(1) state equals the parallel forward; the ablation switches remove what they name; the
// direct baseline's Mamba init; saving and loading; gradients; generation.
#include <ATen/ATen.h>
#include <torch/torch.h>

#include <QTest>
#include <nlohmann/json.hpp>
#include <set>

#include "core/io/checkpoint.h"
#include "core/models/gpt_neox.h"
#include "core/models/hedge_mamba.h"
#include "core/models/hedgehog.h"
#include "core/models/student.h"
#include "core/ops/mixer_output.h"
#include "tests/tensor_test_util.h"
#include "tests/test_util.h"

using namespace hedgelab;
using hedgelab::testing::fixtures_dir;

using hedgelab::testing::relative_error;

namespace {

models::GptNeoXForCausalLM load(const std::string& name) {
  return models::load_gpt_neox(io::CheckpointFolder::open(fixtures_dir() / name));
}

at::Tensor random_ids(const models::GptNeoXConfig& c, int64_t B, int64_t T) {
  return torch::randint(c.vocab_size, {B, T}, torch::kLong);  // [B, T]
}

// A stage-1 model whose feature maps and gains are seeded random, away from the identity start.
models::HedgehogLM perturbed_stage1(const models::GptNeoXForCausalLM& teacher, int64_t chunk) {
  models::HedgehogOptions o;
  o.chunk = chunk;
  models::HedgehogLM stage1(teacher, o);
  torch::NoGradGuard no_grad;
  for (int64_t i = 0; i < teacher->config().num_layers; ++i) {
    auto a = stage1->attention(i);
    for (auto* map : {a->feature_map_q.get(), a->feature_map_k.get()}) {
      map->weight.add_(torch::randn_like(map->weight) * 0.5);
      map->bias.add_(torch::randn_like(map->bias) * 0.5);
    }
    a->output_gain.uniform_(0.5, 1.5);
  }
  return stage1;
}

// Moves Δ, A, D, the gate, the convs and the norm off their fresh values so every path does something.
void randomise(models::HedgeMambaStudent& student) {
  torch::NoGradGuard no_grad;
  for (int64_t i = 0; i < student->config().num_layers; ++i) {
    auto mixer = student->layer(i)->mixer;
    mixer->delta_weight.normal_(0.0, 0.2);
    mixer->delta_bias.uniform_(-1.0, 1.0);
    if (mixer->A_log.defined()) mixer->A_log.uniform_(-1.5, 1.0);
    mixer->D.normal_(0.0, 0.5);
    if (mixer->gate_proj) mixer->gate_proj->weight.normal_(0.0, 0.2);
    for (auto* conv : {&mixer->conv_x, &mixer->conv_k, &mixer->conv_q}) {
      if (!*conv) continue;
      (*conv)->weight.normal_(0.0, 0.5);
      (*conv)->bias.normal_(0.0, 0.1);
    }
    if (mixer->norm_weight.defined()) mixer->norm_weight.uniform_(0.5, 1.5);
  }
}

// Logits of decoding token by token, [B, T, V].
at::Tensor step_logits(models::HedgeMambaStudent& student, const at::Tensor& ids) {
  models::StudentState state;
  std::vector<at::Tensor> out;
  for (int64_t t = 0; t < ids.size(1); ++t)
    out.push_back(student->step(ids.select(1, t), state));
  return at::stack(out, 1);
}

// The recurrent form against the parallel one, and a parallel prefill followed by steps.
void check_recurrent_equals_parallel(models::HedgeMambaStudent& student, const at::Tensor& ids,
                                     const char* what) {
  torch::NoGradGuard no_grad;
  const at::Tensor parallel = student->forward(ids);  // [B, T, V]
  const double err = relative_error(step_logits(student, ids), parallel);
  qInfo("%s: recurrent vs parallel logits relative error %.3g", what, err);
  QVERIFY2(err <= 1e-4, (std::string(what) + ": recurrent vs parallel " + std::to_string(err)).c_str());

  const int64_t split = ids.size(1) / 2 + 1;
  models::StudentState state;
  std::vector<at::Tensor> parts{student->forward(ids.narrow(1, 0, split), state)};
  for (int64_t t = split; t < ids.size(1); ++t)
    parts.push_back(student->step(ids.select(1, t), state).unsqueeze(1));
  QCOMPARE(state.length, ids.size(1));
  const double err2 = relative_error(at::cat(parts, 1), parallel);
  QVERIFY2(err2 <= 1e-4,
           (std::string(what) + ": prefill + steps vs parallel " + std::to_string(err2)).c_str());
}

std::set<std::string> parameter_names(const torch::nn::Module& m) {
  std::set<std::string> names;
  for (const auto& item : m.named_parameters())
    names.insert(item.key());
  return names;
}

bool any_name_contains(const std::set<std::string>& names, const std::string& part) {
  for (const auto& n : names)
    if (n.find(part) != std::string::npos) return true;
  return false;
}

}  // namespace

class TestStudent : public QObject {
  Q_OBJECT
 private Q_SLOTS:
  void initTestCase() { torch::manual_seed(0); }

  void fresh_student_gives_the_stage1_logits_data() {
    QTest::addColumn<QString>("fixture");
    QTest::addColumn<int>("T");
    QTest::newRow("parallel residual, T=37") << QString("gpt_neox_parallel") << 37;
    QTest::newRow("sequential residual, T=37") << QString("gpt_neox_sequential") << 37;
    QTest::newRow("parallel residual, T=64") << QString("gpt_neox_parallel") << 64;
  }
  void fresh_student_gives_the_stage1_logits() {
    QFETCH(QString, fixture);
    QFETCH(int, T);
    auto teacher = load(fixture.toStdString());
    auto stage1 = perturbed_stage1(teacher, 16);  // T is not a multiple of the chunk
    models::MixerOptions options;
    options.chunk = 16;
    auto student = models::HedgeMambaStudentImpl::from_stage1(stage1, options);
    torch::NoGradGuard no_grad;
    const at::Tensor ids = random_ids(teacher->config(), 2, T);
    const at::Tensor reference = stage1->forward(ids);
    const double err = relative_error(student->forward(ids), reference);
    qInfo("%s, T=%d: fresh student vs stage-1 logits relative error %.3g", qPrintable(fixture), T, err);
    QVERIFY2(err <= 1e-4, ("fresh student vs stage 1: " + std::to_string(err)).c_str());
    // Without the chunk boundary and with the recurrent form too.
    const double err_step = relative_error(step_logits(student, ids), reference);
    QVERIFY2(err_step <= 1e-4, ("fresh student (recurrent) vs stage 1: " + std::to_string(err_step)).c_str());
    // Sanity: the teacher is different, so the equality is not vacuous.
    QVERIFY(relative_error(teacher->forward(ids).logits, reference) > 1e-3);
  }

  void fresh_mixer_probes_show_the_stage1_attention() {
    auto teacher = load("gpt_neox_parallel");
    auto stage1 = perturbed_stage1(teacher, 16);
    models::MixerOptions options;
    options.chunk = 16;
    auto student = models::HedgeMambaStudentImpl::from_stage1(stage1, options);
    torch::NoGradGuard no_grad;
    const at::Tensor ids = random_ids(teacher->config(), 1, 23);
    models::HedgehogCaptureOptions hc;
    hc.attention_weights = true;
    const auto s1 = stage1->forward_with(ids, hc);
    models::StudentCaptureOptions sc;
    sc.internals = true;
    sc.probes.implied_attention = true;
    sc.probes.state_norms = true;
    const auto out = student->forward_with(ids, sc);
    const int64_t H = teacher->config().num_heads;
    QCOMPARE(static_cast<int64_t>(out.internals.size()), teacher->config().num_layers);
    const auto& c0 = out.internals[0];
    // Layer 0 sees the same input in both models: the implied attention is stage 1's ā.
    const double err = (c0.implied_attention - s1.attn_weights[0]).abs().max().item<double>();
    qInfo("layer 0: implied attention vs stage-1 ā max error %.3g", err);
    QVERIFY2(err <= 1e-4, ("implied attention vs ā: " + std::to_string(err)).c_str());
    QCOMPARE(c0.delta.sizes().vec(), (std::vector<int64_t>{1, H, 23}));
    QVERIFY((c0.delta - 1.0).abs().max().item<double>() <= 1e-6);  // Δ = 1 fresh
    QVERIFY((c0.alpha - 1.0).abs().max().item<double>() <= 1e-5);  // α ≈ 1 fresh
    QVERIFY((c0.gate - 1.0).abs().max().item<double>() == 0.0);    // g ≡ 1 fresh
    QCOMPARE(c0.state_norms.sizes().vec(), (std::vector<int64_t>{1, H, 23}));
    const double last_norm_err = (c0.state_norms.select(2, 22) - c0.final_state.pow(2).sum({-2, -1}).sqrt())
                                     .abs()
                                     .max()
                                     .item<double>();
    QVERIFY(last_norm_err <= 1e-4 * c0.state_norms.max().item<double>());
  }

  // The short convolution against its definition, out_t = b + Σ_j w_j in_{t−W+1+j} (zeros before the start),
  // summed here in float64 one output at a time; a bf16 input (autocast's projections) comes out in bf16.
  void causal_conv_matches_its_definition_and_keeps_the_input_dtype() {
    const int64_t B = 2, T = 11, C = 5, W = 4;
    models::CausalConv1d conv(C, W);
    {
      torch::NoGradGuard no_grad;
      conv->weight.normal_(0.0, 0.7);
      conv->bias.normal_(0.0, 0.3);
    }
    const at::Tensor in = torch::randn({B, T, C});  // [B, T, C]
    for (const at::ScalarType dt : {at::kFloat, at::kBFloat16}) {
      const at::Tensor x = in.to(dt);           // [B, T, C]
      const at::Tensor out = conv->forward(x);  // [B, T, C]
      QCOMPARE(out.scalar_type(), dt);
      const at::Tensor xd = x.to(at::kDouble), wd = conv->weight.detach().to(at::kDouble);
      const at::Tensor bd = conv->bias.detach().to(at::kDouble);
      at::Tensor ref = at::zeros({B, T, C}, at::kDouble);  // [B, T, C]
      for (int64_t b = 0; b < B; ++b)
        for (int64_t t = 0; t < T; ++t)
          for (int64_t c = 0; c < C; ++c) {
            double v = bd[c].item<double>();
            for (int64_t j = 0; j < W; ++j) {
              const int64_t s = t - (W - 1) + j;
              if (s >= 0) v += wd[c][j].item<double>() * xd[b][s][c].item<double>();
            }
            ref[b][t][c] = v;
          }
      const double err = relative_error(out.to(at::kDouble), ref);
      QVERIFY2(err < (dt == at::kFloat ? 1e-6 : 8e-3),
               qPrintable(QString("dtype %1: relative error %2").arg(c10::toString(dt)).arg(err)));
      // Decoding: one token at a time, the tail carrying the last W−1 inputs, gives the same outputs.
      at::Tensor tail;
      std::vector<at::Tensor> steps;
      for (int64_t t = 0; t < T; ++t)
        steps.push_back(conv->forward(x.narrow(1, t, 1), &tail));  // [B, 1, C]
      const at::Tensor stepped = at::cat(steps, 1);                // [B, T, C]
      QCOMPARE(stepped.scalar_type(), dt);
      const double err_step = relative_error(stepped.to(at::kDouble), ref);
      QVERIFY2(
          err_step < (dt == at::kFloat ? 1e-6 : 8e-3),
          qPrintable(QString("dtype %1, stepped: relative error %2").arg(c10::toString(dt)).arg(err_step)));
    }
  }

  // The read-out y = (num / (den + eps) + D·x) · 2σ(z) · gain with the heads merged, against a loop over
  // its definition in float64; x as the mixer passes it (the heads' view of [B,T,d]); with and without the
  // gate; the output keeps num's dtype.
  void mixer_output_matches_its_definition() {
    const int64_t B = 2, H = 3, T = 5, P = 4;
    const double eps = 1e-3;
    const auto f64 = at::TensorOptions().dtype(at::kDouble);
    const at::Tensor num = torch::randn({B, H, T, P}, f64);
    const at::Tensor den = torch::rand({B, H, T}, f64) + 0.5;
    const at::Tensor x = torch::randn({B, T, H * P}, f64).view({B, T, H, P}).permute({0, 2, 1, 3});
    const at::Tensor D = torch::randn({H}, f64), gain = torch::rand({H}, f64) + 0.5;
    const at::Tensor z = torch::randn({B, T, H * P}, f64);
    for (const bool gate : {true, false}) {
      const at::Tensor y = ops::mixer_output(num, den, x, D, gate ? z : at::Tensor(), gain, eps);  // [B,T,d]
      QCOMPARE(y.sizes(), at::IntArrayRef({B, T, H * P}));
      QCOMPARE(y.scalar_type(), at::kDouble);
      double worst = 0;
      for (int64_t b = 0; b < B; ++b)
        for (int64_t t = 0; t < T; ++t)
          for (int64_t h = 0; h < H; ++h)
            for (int64_t p = 0; p < P; ++p) {
              const double s = num[b][h][t][p].item<double>() / (den[b][h][t].item<double>() + eps) +
                               D[h].item<double>() * x[b][h][t][p].item<double>();
              const double g = gate ? 2.0 / (1.0 + std::exp(-z[b][t][h * P + p].item<double>())) : 1.0;
              const double want = s * g * gain[h].item<double>();
              worst = std::max(worst, std::abs(y[b][t][h * P + p].item<double>() - want));
            }
      QVERIFY2(worst < 1e-12, qPrintable(QString("gate %1: max error %2").arg(gate).arg(worst)));
    }
    // float32 inputs stay float32 (the next step, out_proj, takes the dtype it is given).
    QCOMPARE(ops::mixer_output(num.to(at::kFloat), den.to(at::kFloat), x.to(at::kFloat), D.to(at::kFloat),
                               z.to(at::kFloat), gain.to(at::kFloat), eps)
                 .scalar_type(),
             at::kFloat);
    // A wrong shape names the argument.
    bool named = false;
    try {
      ops::mixer_output(num, den.narrow(2, 0, T - 1), x, D, z, gain, eps);
    } catch (const c10::Error& e) {
      named = std::string(e.what()).find("den must be [B,H,T]") != std::string::npos;
    }
    QVERIFY(named);
  }

  void recurrent_decoding_equals_the_parallel_forward() {
    for (const char* name : {"gpt_neox_parallel", "gpt_neox_sequential"}) {
      auto teacher = load(name);
      auto stage1 = perturbed_stage1(teacher, 8);
      models::MixerOptions options;
      options.chunk = 8;
      auto student = models::HedgeMambaStudentImpl::from_stage1(stage1, options);
      const at::Tensor ids = random_ids(teacher->config(), 2, 27);
      check_recurrent_equals_parallel(student, ids, (std::string(name) + " fresh").c_str());
      randomise(student);
      check_recurrent_equals_parallel(student, ids, (std::string(name) + " randomised").c_str());
      // Randomised, the student has moved away from stage 1: Δ/A/D/gate/conv are live.
      torch::NoGradGuard no_grad;
      QVERIFY(relative_error(student->forward(ids), stage1->forward(ids)) > 1e-2);
    }
  }

  void gated_rmsnorm_option_decodes_like_it_runs() {
    auto teacher = load("gpt_neox_parallel");
    auto stage1 = perturbed_stage1(teacher, 8);
    models::MixerOptions options;
    options.chunk = 8;
    options.normalization = models::MixerNormalization::kGatedRmsNorm;
    auto student = models::HedgeMambaStudentImpl::from_stage1(stage1, options);
    QVERIFY(parameter_names(*student).count("layers.0.mixer.norm_weight"));
    randomise(student);
    check_recurrent_equals_parallel(student, random_ids(teacher->config(), 2, 19), "gated_rmsnorm");
  }

  void ablations_remove_or_freeze_what_they_name() {
    auto teacher = load("gpt_neox_sequential");
    auto stage1 = perturbed_stage1(teacher, 8);
    const at::Tensor ids = random_ids(teacher->config(), 2, 21);
    const auto full_names = parameter_names(*models::HedgeMambaStudentImpl::from_stage1(stage1, {}));
    QVERIFY(any_name_contains(full_names, "gate_proj"));
    QVERIFY(any_name_contains(full_names, "conv_x"));
    QVERIFY(any_name_contains(full_names, "A_log"));
    struct Case {
      const char* name;
      void (*set)(models::MixerOptions&);
      std::vector<std::string> removed;
    };
    const Case cases[] = {
        {"no_gate", [](models::MixerOptions& o) { o.gate = false; }, {"gate_proj"}},
        {"no_conv", [](models::MixerOptions& o) { o.conv = false; }, {"conv_x", "conv_k", "conv_q"}},
        {"no_selective_decay", [](models::MixerOptions& o) { o.selective_decay = false; }, {"A_log"}},
    };
    for (const Case& c : cases) {
      models::MixerOptions options;
      options.chunk = 8;
      c.set(options);
      auto student = models::HedgeMambaStudentImpl::from_stage1(stage1, options);
      const auto names = parameter_names(*student);
      for (const auto& part : c.removed)
        QVERIFY2(!any_name_contains(names, part), (c.name + (": " + part)).c_str());
      // Only what the ablation names is gone.
      for (const auto& n : full_names) {
        bool removed = false;
        for (const auto& part : c.removed)
          removed |= n.find(part) != std::string::npos;
        QVERIFY2(names.count(n) == (removed ? 0u : 1u), (c.name + (": " + n)).c_str());
      }
      QVERIFY(names.size() < full_names.size());
      {
        torch::NoGradGuard no_grad;
        const double err = relative_error(student->forward(ids), stage1->forward(ids));
        QVERIFY2(err <= 1e-4, (std::string(c.name) + ": fresh vs stage 1 " + std::to_string(err)).c_str());
      }
      randomise(student);
      check_recurrent_equals_parallel(student, ids, c.name);
      if (!options.selective_decay) {
        // α ≡ 1 exactly, whatever Δ does, and nothing trainable can change A.
        auto mixer = student->layer(0)->mixer;
        QCOMPARE(mixer->A().abs().max().item<double>(), 0.0);
        models::StudentCaptureOptions sc;
        sc.internals = true;
        torch::NoGradGuard no_grad;
        QCOMPARE(student->forward_with(ids, sc).internals[0].alpha.min().item<double>(), 1.0);
        QVERIFY(!mixer->A().requires_grad());
      }
      if (!options.gate) {
        models::StudentCaptureOptions sc;
        sc.internals = true;
        torch::NoGradGuard no_grad;
        QVERIFY(!student->forward_with(ids, sc).internals[0].gate.defined());
      }
    }
  }

  void direct_init_follows_mamba() {
    auto teacher = load("gpt_neox_parallel");
    auto student = models::HedgeMambaStudentImpl::direct(teacher, {}, 7);
    QVERIFY(student->origin() == models::StudentOrigin::kDirect);
    for (int64_t i = 0; i < teacher->config().num_layers; ++i) {
      auto mixer = student->layer(i)->mixer;
      const at::Tensor A = mixer->A();
      QVERIFY(A.min().item<double>() >= -16.0 && A.max().item<double>() <= -1.0);
      QVERIFY(A.max().item<double>() - A.min().item<double>() > 0.0);
      const at::Tensor dt = at::softplus(mixer->delta_bias);
      QVERIFY(dt.min().item<double>() >= 1e-3 * (1 - 1e-5) && dt.max().item<double>() <= 1e-1 * (1 + 1e-5));
      QCOMPARE(mixer->D.min().item<double>(), 1.0);
      QCOMPARE(mixer->D.max().item<double>(), 1.0);
      const double bound = 1.0 / std::sqrt(64.0);
      QVERIFY(mixer->q_proj->weight.abs().max().item<double>() <= bound);
      QVERIFY(mixer->q_proj->weight.std().item<double>() > 0.5 * bound / std::sqrt(3.0));
      QVERIFY(mixer->gate_proj->weight.abs().max().item<double>() > 0.0);
      QVERIFY(mixer->conv_x->weight.select(1, 0).abs().max().item<double>() > 0.0);  // not the identity
      // Skeleton from the teacher.
      QVERIFY(at::equal(student->layer(i)->mlp->dense_h_to_4h->weight,
                        teacher->gpt_neox->layer(i)->mlp->dense_h_to_4h->weight));
    }
    QVERIFY(at::equal(student->embed_in->weight, teacher->gpt_neox->embed_in->weight));
    QVERIFY(at::equal(student->lm_head_weight(), teacher->lm_head_weight()));
    // A seed is a model: the same seed twice gives the same weights, another seed others.
    auto again = models::HedgeMambaStudentImpl::direct(teacher, {}, 7);
    auto other = models::HedgeMambaStudentImpl::direct(teacher, {}, 8);
    QVERIFY(at::equal(again->layer(1)->mixer->k_proj->weight, student->layer(1)->mixer->k_proj->weight));
    QVERIFY(!at::equal(other->layer(1)->mixer->k_proj->weight, student->layer(1)->mixer->k_proj->weight));
    QVERIFY(!at::equal(student->layer(0)->mixer->k_proj->weight, student->layer(1)->mixer->k_proj->weight));
    check_recurrent_equals_parallel(student, random_ids(teacher->config(), 2, 19), "direct");
  }

  void save_then_load_gives_identical_logits() {
    for (const char* name : {"gpt_neox_parallel", "gpt_neox_sequential"}) {
      auto teacher = load(name);
      models::MixerOptions options;
      options.chunk = 8;
      options.normalization = models::MixerNormalization::kGatedRmsNorm;
      options.selective_decay = std::string(name) == "gpt_neox_parallel";
      auto student = models::HedgeMambaStudentImpl::from_stage1(perturbed_stage1(teacher, 8), options);
      randomise(student);
      hedgelab::testing::TempDir dir;
      models::save_student(student, dir.path() / "student");
      auto loaded = models::load_student(dir.path() / "student");
      QVERIFY(loaded->options().normalization == options.normalization);
      QCOMPARE(loaded->options().selective_decay, options.selective_decay);
      QCOMPARE(loaded->options().chunk, int64_t{8});
      QVERIFY(parameter_names(*loaded) == parameter_names(*student));
      torch::NoGradGuard no_grad;
      const at::Tensor ids = random_ids(teacher->config(), 2, 15);
      QVERIFY(at::equal(loaded->forward(ids), student->forward(ids)));
    }
    // Not a student folder: named file and field.
    hedgelab::testing::TempDir dir;
    HL_EXPECT_ERROR(models::load_student(fixtures_dir() / "gpt_neox_parallel"), "config.json", "format");
    auto teacher = load("gpt_neox_parallel");
    auto student = models::HedgeMambaStudentImpl::direct(teacher, {}, 1);
    models::save_student(student, dir.path());
    auto cfg = nlohmann::json::parse(hedgelab::testing::read_file(dir / "config.json"));
    cfg["mixer"]["normalization"] = "layernorm";
    hedgelab::testing::write_file(dir / "config.json", cfg.dump());
    HL_EXPECT_ERROR(models::load_student(dir.path()), "config.json", "normalization", "layernorm");
    cfg["mixer"]["normalization"] = "denominator";
    cfg["mixer"]["gate"] = false;  // the file still holds gate_proj
    hedgelab::testing::write_file(dir / "config.json", cfg.dump());
    HL_EXPECT_ERROR(models::load_student(dir.path()), "model.safetensors", "gate_proj");
  }

  void gradients_reach_every_trainable_parameter() {
    auto teacher = load("gpt_neox_parallel");
    for (bool fresh : {true, false}) {
      auto student = models::HedgeMambaStudentImpl::from_stage1(perturbed_stage1(teacher, 8), {});
      if (!fresh) randomise(student);
      const at::Tensor ids = random_ids(teacher->config(), 2, 13);
      const at::Tensor logits = student->forward(ids);  // [B, T, V]
      at::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}), ids.reshape({-1})).backward();
      for (const auto& item : student->named_parameters()) {
        QVERIFY2(item.value().requires_grad(), item.key().c_str());
        const at::Tensor g = item.value().grad();
        QVERIFY2(g.defined(), ("no gradient: " + item.key()).c_str());
        QVERIFY2(at::isfinite(g).all().item<bool>(), ("non-finite gradient: " + item.key()).c_str());
        QVERIFY2(g.abs().max().item<double>() > 0.0, ("zero gradient: " + item.key()).c_str());
      }
    }
  }

  void generation_uses_the_recurrent_path_greedily() {
    auto teacher = load("gpt_neox_sequential");
    auto student = models::HedgeMambaStudentImpl::from_stage1(perturbed_stage1(teacher, 8), {});
    randomise(student);
    const std::vector<int64_t> prompt{3, 17, 42, 5, 99};
    models::GenerationOptions go;
    go.max_new_tokens = 9;
    std::vector<int64_t> streamed;
    const auto out = models::generate(student, prompt, go, [&](int64_t t) { streamed.push_back(t); });
    QCOMPARE(static_cast<int64_t>(out.size()), int64_t{9});
    QVERIFY(streamed == out);
    // Greedy: each new token is the argmax of the parallel forward over everything before it.
    std::vector<int64_t> all = prompt;
    all.insert(all.end(), out.begin(), out.end());
    torch::NoGradGuard no_grad;
    const at::Tensor logits = student->forward(at::tensor(all, at::kLong).unsqueeze(0));  // [1, T, V]
    for (size_t i = 0; i < out.size(); ++i)
      QCOMPARE(logits[0][prompt.size() - 1 + i].argmax().item<int64_t>(), out[i]);
    // Sampling is seeded and stops on the stop token.
    go.temperature = 0.8;
    go.top_k = 20;
    go.seed = 5;
    QVERIFY(models::generate(student, prompt, go) == models::generate(student, prompt, go));
    go.stop_token = models::generate(student, prompt, go)[2];
    QVERIFY(models::generate(student, prompt, go).size() <= 3);
    HL_EXPECT_ERROR(models::generate(student, {}, go), "prompt");
  }
};

QTEST_GUILESS_MAIN(TestStudent)
#include "test_student.moc"
