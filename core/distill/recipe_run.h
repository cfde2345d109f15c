// Running the recipe of docs/method.md §3–§5 on a teacher and a corpus: stage 1 (Hedgehog, teacher-forced,
// layer-wise), stage 2 (HedgeMamba, L₂ = CE + KD [+ alignment]), and the comparison runs of §5 (teacher,
// hedgehog, direct, hedgemamba, ablations) at equal token budgets and the same data order.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/data/corpus.h"
#include "core/distill/recipe.h"
#include "core/distill/stages.h"
#include "core/distill/trainer.h"
#include "core/models/gpt_neox.h"
#include "core/models/hedgehog.h"
#include "core/models/student.h"

namespace hedgelab::distill {

struct RunEvents {
  // `run` is "hedgemamba", "direct", an ablation name...; `stage` is "stage1" or "stage2".
  std::function<void(const std::string& run, const std::string& stage, const StepReport&)> on_step;
  std::function<void(const std::string& run, const std::string& stage, const EvalReport&)> on_eval;
  std::function<void(const std::string& run, const std::string& stage, int64_t total_steps)> on_stage_start;
  const std::atomic<bool>* stop_requested = nullptr;  // honoured between steps
  int64_t stop_at_step = 0;  // > 0: stop after this many optimizer steps of a run (both stages counted)
};

using snapshot::RunSummary;

class RecipeRunner {
 public:
  // The teacher is used read-only; `corpus` must outlive the runner.
  RecipeRunner(RecipeConfig recipe, models::GptNeoXForCausalLM teacher, const data::TokenCorpus& corpus,
               RunEvents events = {});

  const RecipeConfig& recipe() const { return recipe_; }
  // The final-evaluation windows: the held-out split's first windows of T+1, at most 512.
  const at::Tensor& heldout_windows() const { return final_windows_; }

  RunSummary evaluate_teacher();
  // Stage 1 from the teacher; `run` names it in events. Returns the trained stage-1 model.
  models::HedgehogLM train_stage1(const RecipeConfig& recipe, const std::string& run, RunSummary& summary);
  // The recipe: stage 1, the student built from it, stage 2. `student_out` receives the trained student.
  RunSummary run_hedgemamba(const RecipeConfig& recipe, const std::string& run,
                            models::HedgeMambaStudent* student_out = nullptr,
                            const models::HedgehogLM* trained_stage1 = nullptr);
  // Stage 1, then the Hedgehog model itself trained with L₂ on the stage-2 budget.
  RunSummary run_hedgehog(const models::HedgehogLM* trained_stage1 = nullptr);
  // The HedgeMamba architecture from a standard Mamba init, trained with L₂ on the whole budget.
  RunSummary run_direct();
  // The runs the recipe's comparison names, plus its ablations when `with_ablations`; stage 1 is trained once
  // and shared by hedgehog and hedgemamba.
  std::vector<RunSummary> compare(bool with_ablations);

 private:
  void train_stage2(const RecipeConfig& recipe, const std::string& run, Stage2Model model, int64_t tokens,
                    const models::HedgehogLM* kd_stage1, RunSummary& summary);
  double evaluate(const std::function<at::Tensor(const at::Tensor&)>& logits_of, int64_t max_windows) const;
  bool run_trainer(Trainer& trainer, const std::string& run, const std::string& stage, RunSummary& summary);
  double teacher_perplexity();

  RecipeConfig recipe_;
  models::GptNeoXForCausalLM teacher_;
  const data::TokenCorpus& corpus_;
  RunEvents events_;
  at::Tensor final_windows_;  // [N, T+1]
  double teacher_ppl_ = 0.0;
};

}  // namespace hedgelab::distill
