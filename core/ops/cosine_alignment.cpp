#include "core/ops/cosine_alignment.h"

#include <atomic>

#include "core/common/env.h"
#include "core/ops/dispatch_tally.h"

namespace hedgelab::ops {

namespace {

std::atomic<CosineAlignmentFn> g_fused_cosine{nullptr};
std::atomic<bool> g_prefer_fused{env_switch("HEDGELAB_FUSED_COSINE", /*default_on=*/true)};

bool kernel_dtype(const at::Tensor& t) {
  return t.scalar_type() == at::kFloat || t.scalar_type() == at::kBFloat16;
}

}  // namespace

void register_fused_cosine_alignment(CosineAlignmentFn fn) {
  g_fused_cosine.store(fn);
}
CosineAlignmentFn registered_fused_cosine_alignment() {
  return g_fused_cosine.load();
}
void set_prefer_fused_cosine_alignment(bool prefer) {
  g_prefer_fused.store(prefer);
}
bool prefer_fused_cosine_alignment() {
  return g_prefer_fused.load();
}

at::Tensor cosine_alignment_reference(const at::Tensor& student, const at::Tensor& teacher) {
  TORCH_CHECK(student.sizes() == teacher.sizes() && student.dim() >= 1, "cosine_alignment: student ",
              student.sizes(), " and teacher ", teacher.sizes(), " must have one shape [..., d]");
  return at::cosine_similarity(student.to(at::kFloat), teacher.to(at::kFloat), -1, kCosineEps);  // [...]
}

at::Tensor cosine_alignment(const at::Tensor& student, const at::Tensor& teacher) {
  TORCH_CHECK(student.sizes() == teacher.sizes() && student.dim() >= 1, "cosine_alignment: student ",
              student.sizes(), " and teacher ", teacher.sizes(), " must have one shape [..., d]");
  const CosineAlignmentFn fused = g_fused_cosine.load();
  if (fused && student.is_cuda() &&
      take_fused("cosine_alignment", g_prefer_fused.load(),
                 teacher.device() == student.device() && kernel_dtype(student) && kernel_dtype(teacher) &&
                     student.numel() > 0))
    return fused(student, teacher);  // [...] float32
  return cosine_alignment_reference(student, teacher);
}

}  // namespace hedgelab::ops
