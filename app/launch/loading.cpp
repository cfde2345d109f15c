#include "app/launch/loading.h"

#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include "core/common/error.h"
#include "core/common/paths.h"
#include "core/data/tokenizer_encoder.h"

namespace hedgelab::launch {

std::string checkpoint_dir_or_demo(const std::string& dir) {
  return dir.empty() ? demo_teacher_dir().string() : dir;
}

LoadedTeacher load_teacher(const std::string& dir_arg) {
  const std::string dir = checkpoint_dir_or_demo(dir_arg);
  auto folder = io::CheckpointFolder::open(dir);
  auto model = models::load_gpt_neox(folder);
  spdlog::info("teacher {}: {} layers, d={}, {} heads, {:.2f}M parameters", dir, model->config().num_layers,
               model->config().hidden_size, model->config().num_heads,
               model->config().parameter_count() / 1e6);
  return LoadedTeacher{dir, std::move(folder), model};
}

const models::GptNeoXConfig& LoadedModel::config() const {
  return student ? student->config() : teacher->config();
}

std::function<at::Tensor(const at::Tensor&)> LoadedModel::logits() const {
  if (student) {
    models::HedgeMambaStudent s = student;
    return [s](const at::Tensor& ids) mutable { return s->forward(ids); };
  }
  models::GptNeoXForCausalLM t = teacher;
  return [t](const at::Tensor& ids) mutable { return t->forward(ids).logits; };
}

LoadedModel load_model(const std::string& dir_arg) {
  const std::string dir = checkpoint_dir_or_demo(dir_arg);
  auto folder = io::CheckpointFolder::open(dir);
  const bool student = folder.config().is_object() && folder.config().contains("format");
  if (!student) {
    auto t = load_teacher(dir);
    return LoadedModel{t.dir, std::move(t.folder), t.model, nullptr};
  }
  auto model = models::load_student(dir);
  spdlog::info("HedgeMamba student {}: {} layers, d={}, {} heads ({} origin)", dir,
               model->config().num_layers, model->config().hidden_size, model->config().num_heads,
               model->origin() == models::StudentOrigin::kStage1 ? "stage-1" : "direct");
  return LoadedModel{dir, std::move(folder), nullptr, model};
}

io::Tokenizer load_tokenizer(const io::CheckpointFolder& folder) {
  auto path = folder.tokenizer_path();
  if (!path)
    throw Error(folder.dir().string(),
                "has no tokenizer.json (HedgeLab reads byte-level BPE tokenizer.json)");
  return io::Tokenizer::from_file(*path);
}

data::TokenCorpus load_corpus_with(const io::Tokenizer& tokenizer, const std::string& path, bool use_cache,
                                   double heldout_fraction) {
  const std::filesystem::path source =
      path.empty() ? data::default_corpus_path() : std::filesystem::path(path);
  data::CorpusOptions options;
  options.use_cache = use_cache;
  options.heldout_fraction = heldout_fraction;
  auto corpus = data::load_corpus(source, data::text_encoder_for(tokenizer), options);
  spdlog::info("corpus {}: {} tokens ({} train, {} held out), tokenization cache: {}", source.string(),
               corpus.size(), corpus.train().size(), corpus.heldout().size(),
               data::cache_outcome_name(corpus.cache_outcome()));
  return corpus;
}

at::Tensor eval_windows(const data::TokenView& view, int64_t T, int64_t max_windows) {
  view.require_tokens(T + 1, "one evaluation window of " + std::to_string(T + 1) + " tokens");
  auto starts = data::eval_window_starts(view.size(), T);
  if (max_windows > 0 && static_cast<int64_t>(starts.size()) > max_windows) starts.resize(max_windows);
  return data::eval_batch(view, T, starts);  // [N, T+1]
}

}  // namespace hedgelab::launch
