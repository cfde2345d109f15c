// The small world the distillation tests run in: the parallel-residual GPT-NeoX fixture as teacher, its
// tokenizer, a repetitive corpus of ~9.6K tokens, and a recipe of 8 stage-1 and 6 stage-2 steps of 2 × 16
// tokens that probes every 3 steps and checkpoints every 5.
#pragma once

#include <string>

#include "core/data/corpus.h"
#include "core/data/tokenizer_encoder.h"
#include "core/distill/recipe.h"
#include "core/io/checkpoint.h"
#include "core/io/tokenizer.h"
#include "core/models/gpt_neox.h"
#include "core/run/distill_run.h"
#include "tests/test_util.h"

namespace hedgelab::testing {

struct DistillFixture {
  TempDir tmp;
  io::Tokenizer tokenizer = io::Tokenizer::from_file(fixtures_dir() / "gpt_neox_parallel" / "tokenizer.json");
  models::GptNeoXForCausalLM teacher =
      models::load_gpt_neox(io::CheckpointFolder::open(fixtures_dir() / "gpt_neox_parallel"));
  data::TokenCorpus corpus;

  DistillFixture() {
    std::string text;
    for (int i = 0; i < 300; ++i)
      text += "The quick brown fox " + std::to_string(i % 13) + " jumps over the lazy dog.\n";
    write_file(tmp / "corpus.txt", text);
    data::CorpusOptions o;
    o.use_cache = false;
    corpus = data::load_corpus(tmp / "corpus.txt", data::text_encoder_for(tokenizer), o);
  }

  distill::RecipeConfig recipe() const {
    distill::RecipeConfig r;
    r.name = "tiny";
    r.data.context = 16;
    r.data.batch_size = 2;
    r.data.eval_every = 4;
    r.data.eval_windows = 2;
    r.data.probe_every = 3;
    r.data.checkpoint_every = 5;
    r.data.probe_text = "The quick brown fox";
    r.model.chunk = 8;
    r.stage1.tokens = 8 * 32;  // 8 steps
    r.stage1.warmup_steps = 2;
    r.stage2.tokens = 6 * 32;  // 6 steps
    r.stage2.warmup_steps = 2;
    return r;
  }

  // The probe text of `r` as ids and decoded pieces.
  run::ProbeText probe(const distill::RecipeConfig& r) const {
    run::ProbeText p;
    for (auto id : tokenizer.encode(r.data.probe_text)) {
      p.ids.push_back(id);
      p.pieces.push_back(tokenizer.decode({id}));
    }
    return p;
  }
};

}  // namespace hedgelab::testing
