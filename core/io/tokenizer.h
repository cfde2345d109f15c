// Byte-level BPE tokenizer read from a Hugging Face tokenizer.json (GPT-NeoX/Pythia, GPT-2 family).
// Torch-free. Encoding follows the tokenizers library: added tokens are split out first, the rest is
// normalized (NFC when the file asks), pre-tokenized by the ByteLevel regex split, mapped to byte-level
// characters and merged by rank. `truncation` and `padding` in the file are ignored (batch settings of the
// Python API). A Tokenizer may be used from several threads at once: its word cache is bounded and locked.
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

  // Throws hedgelab::Error("text", "invalid UTF-8 at byte N") (N counted from 0) on ill-formed input.
  // encode(text) is encode(text, true), like the Python library's default: the file's TemplateProcessing
  // post-processor (if any) adds its special tokens; with null or ByteLevel post-processors nothing is added.
  std::vector<TokenId> encode(std::string_view text) const;
  std::vector<TokenId> encode(std::string_view text, bool add_special_tokens) const;
  // Streams a large input in bounded memory: reads `in` in pieces, cuts only where the pre-tokenizer would
  // cut anyway, and hands ids to `sink` in order. The concatenation equals encode(whole text).
  void encode_stream(std::istream& in, const std::function<void(const std::vector<TokenId>&)>& sink) const;
  // Same with pieces of about `chunk_bytes` (a single pre-token longer than that is still read whole).
  void encode_stream(std::istream& in, const std::function<void(const std::vector<TokenId>&)>& sink,
                     std::size_t chunk_bytes, bool add_special_tokens = true) const;
  static constexpr std::size_t kDefaultStreamChunkBytes = std::size_t{1} << 20;
  // Decodes as the library does: unknown ids are dropped; with skip_special_tokens, special added tokens too.
  std::string decode(const std::vector<TokenId>& ids, bool skip_special_tokens = false) const;
  // The raw bytes before the lossy UTF-8 reading: a byte-level token may end inside a character, so a
  // streaming printer concatenates these and prints only complete characters.
  std::string decode_bytes(const std::vector<TokenId>& ids, bool skip_special_tokens = false) const;

  std::size_t vocab_size() const;  // largest id + 1, added tokens included
  std::optional<TokenId> token_to_id(std::string_view token) const;
  std::string id_to_token(TokenId id) const;  // "" when unknown
  std::optional<TokenId> eos_id() const;      // <|endoftext|> if present
  bool is_special(TokenId id) const;          // a special added token (dropped by skip_special_tokens)

 private:
  struct Impl;  // core/io/tokenizer_internal.h
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace hedgelab::io
