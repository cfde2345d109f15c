// What the CLI's subcommands and the GUI's worker share: opening a checkpoint folder (or the demo teacher)
// with its tokenizer, the corpus, evaluation windows.
#pragma once

#include <functional>
#include <string>

#include "core/data/batches.h"
#include "core/data/corpus.h"
#include "core/io/checkpoint.h"
#include "core/io/tokenizer.h"
#include "core/models/gpt_neox.h"
#include "core/models/student.h"

namespace hedgelab::launch {

struct LoadedTeacher {
  std::string dir;
  io::CheckpointFolder folder;
  models::GptNeoXForCausalLM model{nullptr};
};

// `dir` empty = the embedded demo teacher.
std::string checkpoint_dir_or_demo(const std::string& dir);
LoadedTeacher load_teacher(const std::string& dir);

// A folder holding either a GPT-NeoX checkpoint or a HedgeMamba student (docs/student-format.md), told apart
// by config.json's "format". Exactly one of teacher/student is set.
struct LoadedModel {
  std::string dir;
  io::CheckpointFolder folder;
  models::GptNeoXForCausalLM teacher{nullptr};
  models::HedgeMambaStudent student{nullptr};

  bool is_student() const { return static_cast<bool>(student); }
  const models::GptNeoXConfig& config() const;
  // ids [B,T] → logits [B,T,V] (the student's chunked parallel form).
  std::function<at::Tensor(const at::Tensor&)> logits() const;
};
// `dir` empty = the embedded demo teacher.
LoadedModel load_model(const std::string& dir);
// The folder's tokenizer.json; an Error naming the folder when there is none.
io::Tokenizer load_tokenizer(const io::CheckpointFolder& folder);

// `path` empty = the default corpus (data/kjv.txt). Logs what was read and whether the cache was hit.
data::TokenCorpus load_corpus_with(const io::Tokenizer& tokenizer, const std::string& path, bool use_cache,
                                   double heldout_fraction = data::CorpusOptions{}.heldout_fraction);

// The §5 protocol's windows of `view` as one [N, T+1] int64 tensor, the first `max_windows` when > 0.
at::Tensor eval_windows(const data::TokenView& view, int64_t T, int64_t max_windows);

}  // namespace hedgelab::launch
