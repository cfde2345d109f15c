// ops::trained_linear (labels unit and cuda): the linear whose weight gradients are made in float32, against
// at::linear (its reference) forward and backward, and against float64 for the weight gradient. On the CPU:
// the custom form in float32 and bf16, the dispatch's conditions, bad shapes. On a GPU under bf16 autocast:
// the same forward bits as autocast's at::linear, dx as close, dW and db in float32 and no further from
// float64 than autocast's (closer where the GEMM makes float32 itself).
#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/version.h>

#include <QTest>
#include <string>
#include <vector>

#include "core/ops/autocast.h"
#include "core/ops/trained_linear.h"
#include "tests/cuda_test_util.h"
#include "tests/tensor_test_util.h"

using namespace hedgelab;
using namespace hedgelab::ops;
using testing::autograd_node_names;
using testing::count_containing;
using testing::expect_close;

namespace {

struct Grads {
  at::Tensor y, dx, dw, db;
};

// y = f(x, w, b) and the gradients of ⟨y, dy⟩ in x, w and b.
template <typename F>
Grads run(F f, const at::Tensor& x0, const at::Tensor& w0, const at::Tensor& b0, const at::Tensor& dy) {
  const at::Tensor x = x0.detach().clone().requires_grad_(true);
  const at::Tensor w = w0.detach().clone().requires_grad_(true);
  const at::Tensor b = b0.detach().clone().requires_grad_(true);
  const at::Tensor y = f(x, w, b);
  const auto g = torch::autograd::grad({y}, {x, w, b}, {dy.to(y.scalar_type())});
  return {y.detach(), g[0], g[1], g[2]};
}

// The float64 gradients of ⟨y, dy⟩ for y = x wᵀ + b with x, w (and dy) as given: dW = dyᵀ x, db = Σ dy.
Grads float64_reference(const at::Tensor& x, const at::Tensor& w, const at::Tensor& dy) {
  const int64_t in = w.size(1), out = w.size(0);
  const at::Tensor x2 = x.to(at::kDouble).cpu().reshape({-1, in}),
                   dy2 = dy.to(at::kDouble).cpu().reshape({-1, out});
  return {at::Tensor(), dy2.mm(w.to(at::kDouble).cpu()).view(x.sizes()), dy2.t().mm(x2), dy2.sum(0)};
}

}  // namespace

class TestTrainedLinear : public QObject {
  Q_OBJECT

 private Q_SLOTS:
  void initTestCase() { at::manual_seed(2026); }

  void float32_form_equals_at_linear() {
    const at::Tensor x = at::randn({2, 5, 7}), w = at::randn({3, 7}), b = at::randn({3}),
                     dy = at::randn({2, 5, 3});
    const Grads ref = run([](auto& x, auto& w, auto& b) { return at::linear(x, w, b); }, x, w, b, dy);
    const Grads got =
        run([](auto& x, auto& w, auto& b) { return linear_with_f32_weight_grads(x, w, b, at::kFloat); }, x, w,
            b, dy);
    QVERIFY(at::allclose(got.y, ref.y, 1e-6, 1e-6));
    QVERIFY(at::allclose(got.dx, ref.dx, 1e-6, 1e-6));
    QVERIFY(at::allclose(got.dw, ref.dw, 1e-6, 1e-6));
    QVERIFY(at::allclose(got.db, ref.db, 1e-6, 1e-6));
    // The output is not a view made inside the Function: in-place edits work as on at::linear's.
    at::Tensor y = linear_with_f32_weight_grads(x, w.detach().clone().requires_grad_(true), b, at::kFloat);
    y.add_(1.0);
    QCOMPARE(y.dim(), 3);
  }

  // In bf16 on the CPU: y as at::linear makes it on the bf16 operands, dx back in x's dtype (float32), dW and
  // db in float32 within bf16's rounding of the float64 gradients of the same rounded operands.
  void bf16_form_hands_float32_gradients() {
    const at::Tensor x = at::randn({4, 9, 16}), w = at::randn({8, 16}), b = at::randn({8}),
                     dy = at::randn({4, 9, 8});
    const Grads got =
        run([](auto& x, auto& w, auto& b) { return linear_with_f32_weight_grads(x, w, b, at::kBFloat16); }, x,
            w, b, dy);
    QCOMPARE(got.y.scalar_type(), at::kBFloat16);
    QVERIFY(at::equal(got.y, at::linear(x.to(at::kBFloat16), w.to(at::kBFloat16), b.to(at::kBFloat16))));
    QCOMPARE(got.dx.scalar_type(), at::kFloat);
    QCOMPARE(got.dw.scalar_type(), at::kFloat);
    QCOMPARE(got.db.scalar_type(), at::kFloat);
    const at::Tensor xb = x.to(at::kBFloat16), wb = w.to(at::kBFloat16), dyb = dy.to(at::kBFloat16);
    const Grads ref = float64_reference(xb, wb, dyb);
    expect_close("cpu bf16", "dx", got.dx, ref.dx, 1e-2);
    expect_close("cpu bf16", "dW", got.dw, ref.dw, 1e-2);
    expect_close("cpu bf16", "db", got.db, ref.db, 1e-5);  // summed in float32 from exact bf16 values
  }

  void without_a_bias() {
    const at::Tensor x = at::randn({6, 5}).requires_grad_(true), w = at::randn({4, 5}).requires_grad_(true);
    const at::Tensor y = linear_with_f32_weight_grads(x, w, at::Tensor(), at::kFloat);
    QVERIFY(at::allclose(y, at::linear(x, w), 1e-6, 1e-6));
    y.sum().backward();
    QVERIFY(at::allclose(w.grad(), at::ones({6, 4}).t().mm(x.detach()), 1e-6, 1e-6));
    QVERIFY(at::allclose(x.grad(), at::ones({6, 4}).mm(w.detach()), 1e-6, 1e-6));
  }

  // The dispatch: the custom form only under CUDA autocast with a float32 CUDA weight that requires grad and
  // the switch on; at::linear (an ATen backward node) for every CPU call whatever the switch says.
  void dispatch_keeps_at_linear_on_the_cpu() {
    const bool before = fp32_weight_grads();
    set_fp32_weight_grads(true);
    const at::Tensor x = at::randn({3, 5}), w = at::randn({2, 5}).requires_grad_(true);
    const auto names = autograd_node_names(trained_linear(x, w, at::Tensor()));
    QCOMPARE(count_containing(names, "LinearF32Grads"), 0);
    const auto custom = autograd_node_names(linear_with_f32_weight_grads(x, w, at::Tensor(), at::kFloat));
    QCOMPARE(count_containing(custom, "LinearF32Grads"), 1);
    set_fp32_weight_grads(before);
  }

  void bad_shapes_are_one_line_errors() {
    try {
      linear_with_f32_weight_grads(at::randn({3, 5}), at::randn({2, 4}), at::Tensor(), at::kFloat);
      QFAIL("expected an error");
    } catch (const c10::Error& e) {
      const std::string what = e.what_without_backtrace();
      QVERIFY2(what.find("x [..., in] and w [out, in] do not match") != std::string::npos, what.c_str());
    }
    try {
      linear_with_f32_weight_grads(at::randn({3, 5}), at::randn({2, 5}), at::randn({3}), at::kFloat);
      QFAIL("expected an error");
    } catch (const c10::Error& e) {
      const std::string what = e.what_without_backtrace();
      QVERIFY2(what.find("b must be [out] = [2]") != std::string::npos, what.c_str());
    }
  }

  // On a GPU under bf16 autocast, at the shape of a pythia-160m projection over one micro-batch's tokens.
  void under_bf16_autocast_on_a_gpu() {
    if (!at::hasCUDA()) QSKIP("no CUDA device");
    const auto cuda = at::TensorOptions().device(at::kCUDA);
    const at::Tensor x = at::randn({4, 512, 768}, cuda), w = at::randn({768, 768}, cuda) * 0.03,
                     b = at::randn({768}, cuda), dy = at::randn({4, 512, 768}, cuda);
    const ops::AutocastScope autocast({true, at::kBFloat16});
    const Grads ref = run([](auto& x, auto& w, auto& b) { return at::linear(x, w, b); }, x, w, b, dy);
    const bool before = fp32_weight_grads();
    set_fp32_weight_grads(true);
    at::Tensor probe_w = w.clone().requires_grad_(true);
    QCOMPARE(count_containing(autograd_node_names(trained_linear(x, probe_w, b)), "LinearF32Grads"), 1);
    const Grads got = run([](auto& x, auto& w, auto& b) { return trained_linear(x, w, b); }, x, w, b, dy);
    set_fp32_weight_grads(before);
    QVERIFY(at::equal(got.y, ref.y));  // autocast's own product on the same cached copies
    QCOMPARE(got.dw.scalar_type(), at::kFloat);
    QCOMPARE(got.db.scalar_type(), at::kFloat);
    const Grads f64 = float64_reference(x.to(at::kBFloat16), w.to(at::kBFloat16), dy.to(at::kBFloat16));
    expect_close("cuda bf16", "dx", got.dx, f64.dx, 1e-2);
    const double ours = testing::relative_error(got.dw.cpu(), f64.dw),
                 autocast_err = testing::relative_error(ref.dw.cpu(), f64.dw);
    qInfo("dW rel err against float64: ours %.2e, autocast's %.2e (f32-output GEMM: %s)", ours, autocast_err,
          weight_grad_gemm_has_f32_output() ? "yes" : "no");
    QVERIFY(ours <= autocast_err * 1.01);
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 8)
    QVERIFY(weight_grad_gemm_has_f32_output());  // LibTorch has had at::mm(a, b, out_dtype) since 2.8
#endif
    if (weight_grad_gemm_has_f32_output()) QVERIFY2(ours < 1e-4, std::to_string(ours).c_str());
    expect_close("cuda bf16", "db", got.db, f64.db, 1e-5);
  }
};

QTEST_APPLESS_MAIN(TestTrainedLinear)
#include "test_trained_linear.moc"
