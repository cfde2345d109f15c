// The CLI's shared loading (app/launch/loading.h, also the GUI worker's) and its Ctrl+C guard.
#pragma once

#include <atomic>

#include "app/launch/loading.h"

namespace hedgelab::cli {

using launch::checkpoint_dir_or_demo;
using launch::eval_windows;
using launch::load_corpus_with;
using launch::load_model;
using launch::load_teacher;
using launch::load_tokenizer;
using launch::LoadedModel;
using launch::LoadedTeacher;

// While alive, Ctrl+C sets a flag instead of killing the process, so long work stops cleanly between steps.
class InterruptGuard {
 public:
  InterruptGuard();
  ~InterruptGuard();
  InterruptGuard(const InterruptGuard&) = delete;
  InterruptGuard& operator=(const InterruptGuard&) = delete;
  static const std::atomic<bool>& flag();

 private:
  void (*previous_)(int) = nullptr;
};

}  // namespace hedgelab::cli
