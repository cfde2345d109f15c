// Byte-level BPE tokenizer read from a Hugging Face tokenizer.json (GPT-NeoX/Pythia, GPT-2 family).
// Torch-free. Encoding follows the tokenizers library: added tokens are split out first, the rest is
// normalized (NFC when the file asks), pre-tokenized by the ByteLevel regex split, mapped to byte-level
// characters and merged by rank.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <istream>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace hedgelab::io {

using TokenId = std::int32_t;

class Tokenizer {
 public:
  // Throws hedgelab::Error naming the file and field on anything it cannot honour
  // (unsupported model type, pre-tokenizer, normalizer, malformed JSON...).
  static Tokenizer from_file(const std::filesystem::path& tokenizer_json);
  static Tokenizer from_json_text(const std::string& json_text, const std::string& source_name);

  // A byte-level tokenizer with the 256 byte symbols as its whole vocabulary (ids 0..255, no merges) plus
  // `<|endoftext|>` as id 256; what `hedgelab-cli pretrain` ships with the demo teacher.
  static Tokenizer byte_level_vocabulary();
  // The tokenizer.json text describing this tokenizer, loadable by the tokenizers library.
  std::string to_json_text() const;

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  std::vector<TokenId> encode(std::string_view text) const;
  // Streams a large input in bounded memory: reads `in` in pieces, cuts only where the pre-tokenizer would
  // cut anyway, and hands ids to `sink` in order. The concatenation equals encode(whole text).
  void encode_stream(std::istream& in, const std::function<void(const std::vector<TokenId>&)>& sink) const;
  std::string decode(const std::vector<TokenId>& ids, bool skip_special_tokens = false) const;

  std::size_t vocab_size() const;  // largest id + 1, added tokens included
  std::optional<TokenId> token_to_id(std::string_view token) const;
  std::string id_to_token(TokenId id) const;  // "" when unknown
  std::optional<TokenId> eos_id() const;      // <|endoftext|> if present

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace hedgelab::io
