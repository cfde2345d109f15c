// The bridge from a checkpoint's Tokenizer to the TextEncoder value core/data reads corpora with.
#pragma once

#include "core/data/corpus.h"
#include "core/io/tokenizer.h"

namespace hedgelab::data {

// Encodes with `tokenizer` (which must outlive the encoder), appends its <|endoftext|> after each document,
// and fingerprints it by the SHA-256 of its tokenizer.json text so a changed tokenizer never hits a stale
// cache.
TextEncoder text_encoder_for(const io::Tokenizer& tokenizer);

}  // namespace hedgelab::data
