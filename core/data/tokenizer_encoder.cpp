#include "core/data/tokenizer_encoder.h"

#include "core/data/sha256.h"

namespace hedgelab::data {

TextEncoder text_encoder_for(const io::Tokenizer& tokenizer) {
  TextEncoder e;
  e.encode = [&tokenizer](std::string_view text) { return tokenizer.encode(text); };
  if (auto eos = tokenizer.eos_id()) e.eos = *eos;
  Sha256 h;
  h.update(tokenizer.to_json_text());
  const auto d = h.digest();
  e.fingerprint = "tokenizer.json sha256 " + to_hex(d.data(), d.size());
  e.vocab_size = tokenizer.vocab_size();
  return e;
}

}  // namespace hedgelab::data
