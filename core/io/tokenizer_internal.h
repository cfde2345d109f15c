// Pieces of the byte-level BPE tokenizer shared by core/io/tokenizer*.cpp; not a public API.
#pragma once

#include <cstdint>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "core/io/tokenizer.h"

namespace hedgelab::io::detail {

using Json = nlohmann::ordered_json;

// GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other 68 bytes take the code
// points 256.. in byte order. Returns the UTF-8 of byte b's symbol.
const std::string& byte_symbol(unsigned char b);
// The byte a symbol code point stands for, or -1.
int symbol_byte(char32_t cp);
// Appends the byte-level symbols of `bytes` to `out`.
void append_byte_symbols(std::string_view bytes, std::string& out);

// The GPT-2 / GPT-NeoX pre-tokenizer split
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// of valid UTF-8, as [begin, end) byte ranges covering `text`.
void gpt2_split(std::string_view text, std::vector<std::pair<std::size_t, std::size_t>>& pieces);
inline constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Character class the split regex sees.
enum class CharClass { kLetter, kNumber, kSpace, kOther };
CharClass char_class(char32_t cp);

struct AddedToken {
  TokenId id = 0;
  std::string content;
  bool single_word = false, lstrip = false, rstrip = false, normalized = true, special = false;
};

// Leftmost-longest multi-pattern search (what the tokenizers library asks of aho-corasick): at the leftmost
// position where some pattern starts, the longest one; equal patterns resolve to the first added.
class PatternSet {
 public:
  void add(const std::string& pattern, std::size_t token_index);
  bool empty() const { return patterns_.empty(); }
  std::size_t max_length() const { return max_length_; }
  const std::vector<std::pair<std::string, std::size_t>>& patterns() const { return patterns_; }
  // First match starting at or after `from`: (begin, end, token_index), or begin == npos.
  struct Match {
    std::size_t begin = std::string::npos, end = 0, token_index = 0;
  };
  Match find(std::string_view text, std::size_t from) const;

 private:
  struct Node {
    std::vector<std::pair<unsigned char, std::int32_t>> children;  // sorted by byte
    std::int64_t token_index = -1;
  };
  std::int32_t child(std::int32_t node, unsigned char b) const;
  std::vector<Node> nodes_{Node{}};
  std::vector<std::pair<std::string, std::size_t>> patterns_;
  bool first_byte_[256] = {};
  std::size_t max_length_ = 0;
};

// A text range and, when it is an added token, that token.
struct Segment {
  std::size_t begin, end;
  const AddedToken* token;
};

// The BPE model: vocab, merges by rank, and a bounded word cache guarded by a mutex (encode is thread-safe).
class BpeModel {
 public:
  std::unordered_map<std::string, TokenId> vocab;
  std::vector<std::string> id_to_token;  // "" where no token has the id
  std::vector<std::pair<std::string, std::string>> merges;
  std::optional<std::string> unk_token, continuing_subword_prefix, end_of_word_suffix;
  bool fuse_unk = false, byte_fallback = false, ignore_merges = false;

  // Builds the merge map; throws hedgelab::Error naming `model_where` ("<file>: model") and the field on a
  // merge whose parts or result are not in the vocab, or an unk_token outside it.
  void build(const std::string& model_where);
  // Appends the ids of one pre-token (already in byte-level symbols).
  void tokenize(std::string_view word, std::vector<TokenId>& out) const;

 private:
  void merge_word(std::string_view word, std::vector<TokenId>& out) const;
  struct MergeInfo {
    std::uint32_t rank;
    TokenId new_id;
  };
  std::unordered_map<std::uint64_t, MergeInfo> merge_map_;
  std::optional<TokenId> unk_id_;
  static constexpr std::size_t kCacheCapacity = 20000;
  static constexpr std::size_t kCacheMaxWordBytes = 128;
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<TokenId>> cache_;
};

struct PreTokenizerStep {
  enum Kind { kSplit, kByteLevel } kind;
  bool add_prefix_space = false;
  bool use_regex = true;
};

}  // namespace hedgelab::io::detail

namespace hedgelab::io {

struct Tokenizer::Impl {
  std::string source;
  detail::BpeModel model;
  std::vector<detail::AddedToken> added;  // sorted by id
  std::unordered_map<TokenId, std::size_t> added_by_id;
  std::unordered_map<std::string, std::size_t> added_by_content;
  std::unordered_set<std::string> special_contents;
  detail::PatternSet raw_patterns;         // added tokens matched on the raw text
  detail::PatternSet normalized_patterns;  // added tokens matched on the normalized text
  bool nfc = false;
  std::vector<detail::PreTokenizerStep> pre_steps;
  bool byte_level_decoder = true;
  std::vector<std::pair<std::vector<TokenId>, std::vector<TokenId>>>
      templates;  // (prefix, suffix), inner first
  // The configuration objects as read, written back by to_json_text().
  detail::Json normalizer_json, pre_tokenizer_json, post_processor_json, decoder_json;
  TokenId max_id = -1;

  // Sets up pattern sets and lookups once `added`, `model` and `nfc` are in place.
  void index_added_tokens();
  // Ids of valid UTF-8 `text`, template not applied. `continuation` marks text that carries on a piece
  // begun before it (a streaming cut), so that ByteLevel's add_prefix_space must not fire at its start.
  void encode_text(std::string_view text, bool continuation, std::vector<TokenId>& out) const;
  std::vector<detail::Segment> split_added(std::string_view text, const detail::PatternSet& set) const;
  void pre_tokenize_and_merge(std::string_view text, bool continuation, std::vector<TokenId>& out) const;
  // Whether a stream may be cut before text[p] with encode(a + b) == encode(a) + encode(b).
  bool is_safe_cut(std::string_view text, std::size_t p) const;
  std::size_t cut_margin_before() const;
  std::size_t cut_margin_after() const;
  std::size_t normalized_window() const;
};

}  // namespace hedgelab::io
