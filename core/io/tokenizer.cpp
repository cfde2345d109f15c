// Encoding and decoding, following the tokenizers library step by step: added tokens are split out of the raw
// text (non-normalized ones) and then out of each normalized piece (normalized ones), the rest goes through
// the pre-tokenizer steps, the byte-level alphabet and the BPE model.
#include <algorithm>
#include <deque>

#include "core/common/error.h"
#include "core/io/tokenizer_internal.h"
#include "core/io/unicode.h"

namespace hedgelab::io {

using detail::AddedToken;
using detail::PatternSet;
using detail::Segment;

// ---- PatternSet
// ---------------------------------------------------------------------------------------------

void PatternSet::add(const std::string& pattern, std::size_t token_index) {
  std::int32_t node = 0;
  for (unsigned char b : pattern) {
    std::int32_t next = child(node, b);
    if (next < 0) {
      next = static_cast<std::int32_t>(nodes_.size());
      nodes_.emplace_back();
      auto& children = nodes_[node].children;
      children.insert(std::upper_bound(children.begin(), children.end(), std::make_pair(b, std::int32_t{-1})),
                      std::make_pair(b, next));
    }
    node = next;
  }
  if (nodes_[node].token_index < 0) nodes_[node].token_index = static_cast<std::int64_t>(token_index);
  patterns_.emplace_back(pattern, token_index);
  if (!pattern.empty()) first_byte_[static_cast<unsigned char>(pattern[0])] = true;
  max_length_ = std::max(max_length_, pattern.size());
}

std::int32_t PatternSet::child(std::int32_t node, unsigned char b) const {
  for (const auto& [byte, index] : nodes_[node].children) {
    if (byte == b) return index;
    if (byte > b) break;
  }
  return -1;
}

PatternSet::Match PatternSet::find(std::string_view text, std::size_t from) const {
  for (std::size_t pos = from; pos < text.size(); ++pos) {
    if (!first_byte_[static_cast<unsigned char>(text[pos])]) continue;
    Match best;
    std::int32_t node = 0;
    for (std::size_t i = pos; i < text.size(); ++i) {
      node = child(node, static_cast<unsigned char>(text[i]));
      if (node < 0) break;
      if (nodes_[node].token_index >= 0) {
        best.begin = pos;
        best.end = i + 1;
        best.token_index = static_cast<std::size_t>(nodes_[node].token_index);
      }
    }
    if (best.begin != std::string::npos) return best;
  }
  return Match{};
}

// ---- Added tokens
// -------------------------------------------------------------------------------------------

namespace {

bool ends_with_word(std::string_view s) {
  if (s.empty()) return false;
  std::size_t pos = s.size();
  return unicode::is_word_char(unicode::previous_code_point(s, pos));
}

bool starts_with_word(std::string_view s) {
  if (s.empty()) return false;
  std::size_t pos = 0;
  return unicode::is_word_char(unicode::next_code_point(s, pos));
}

// Start of the whitespace run that ends `s` (s.size() when none).
std::size_t trailing_space_start(std::string_view s) {
  std::size_t pos = s.size();
  while (pos > 0) {
    std::size_t prev = pos;
    if (!unicode::is_whitespace(unicode::previous_code_point(s, prev))) break;
    pos = prev;
  }
  return pos;
}

// Length of the whitespace run that starts `s`.
std::size_t leading_space_length(std::string_view s) {
  std::size_t pos = 0;
  while (pos < s.size()) {
    std::size_t next = pos;
    if (!unicode::is_whitespace(unicode::next_code_point(s, next))) break;
    pos = next;
  }
  return pos;
}

}  // namespace

void Tokenizer::Impl::index_added_tokens() {
  added_by_id.clear();
  added_by_content.clear();
  special_contents.clear();
  raw_patterns = PatternSet{};
  normalized_patterns = PatternSet{};
  for (std::size_t i = 0; i < added.size(); ++i) {
    added_by_id[added[i].id] = i;
    added_by_content[added[i].content] = i;
    if (added[i].special) special_contents.insert(added[i].content);
    max_id = std::max(max_id, added[i].id);
  }
  // Special tokens first, then the others, each in file order: the order the library builds its matchers in.
  for (int pass = 0; pass < 2; ++pass) {
    for (std::size_t i = 0; i < added.size(); ++i) {
      const AddedToken& t = added[i];
      if (t.special != (pass == 0)) continue;
      if (t.normalized) {
        normalized_patterns.add(nfc ? unicode::nfc(t.content) : t.content, i);
      } else {
        raw_patterns.add(t.content, i);
      }
    }
  }
}

std::vector<Segment> Tokenizer::Impl::split_added(std::string_view sentence, const PatternSet& set) const {
  std::vector<Segment> out;
  const std::size_t n = sentence.size();
  std::size_t start_offset = 0;
  for (std::size_t from = 0; !set.empty() && from < n;) {
    const PatternSet::Match m = set.find(sentence, from);
    if (m.begin == std::string::npos) break;
    from = m.end;  // the library's match iterator moves on from the raw match, whatever stripping does
    const AddedToken& token = added[m.token_index];
    std::size_t start = m.begin, stop = m.end;
    if (token.single_word) {
      const bool space_before = start == 0 || !ends_with_word(sentence.substr(0, start));
      const bool space_after = stop == n || !starts_with_word(sentence.substr(stop));
      if (!space_before || !space_after) continue;
    }
    if (token.lstrip) start = std::max(trailing_space_start(sentence.substr(0, start)), start_offset);
    if (token.rstrip) stop += leading_space_length(sentence.substr(stop));
    // A match inside whitespace an rstrip already took would give overlapping pieces; we skip or clamp it.
    if (stop <= start_offset) continue;
    start = std::max(start, start_offset);
    if (start_offset < start) out.push_back(Segment{start_offset, start, nullptr});
    out.push_back(Segment{start, stop, &token});
    start_offset = stop;
  }
  if (start_offset < n) out.push_back(Segment{start_offset, n, nullptr});
  return out;
}

// ---- Encoding
// -----------------------------------------------------------------------------------------------

void Tokenizer::Impl::pre_tokenize_and_merge(std::string_view text, bool continuation,
                                             std::vector<TokenId>& out) const {
  std::vector<std::string_view> pieces{text}, next;
  std::deque<std::string> storage;  // pieces that got a prefix space
  std::vector<std::pair<std::size_t, std::size_t>> ranges;
  auto split_all = [&] {
    next.clear();
    for (std::string_view p : pieces) {
      ranges.clear();
      detail::gpt2_split(p, ranges);
      for (const auto& [b, e] : ranges)
        next.push_back(p.substr(b, e - b));
    }
    pieces.swap(next);
  };
  for (const detail::PreTokenizerStep& step : pre_steps) {
    if (step.kind == detail::PreTokenizerStep::kSplit) {
      split_all();
      continuation = false;  // a stream cut is a split boundary, so the next piece is a whole one
      continue;
    }
    if (step.add_prefix_space) {
      for (std::size_t i = 0; i < pieces.size(); ++i) {
        if (i == 0 && continuation) continue;
        if (pieces[i].empty() || pieces[i][0] != ' ') {
          storage.push_back(" " + std::string(pieces[i]));
          pieces[i] = storage.back();
        }
      }
    }
    if (step.use_regex) split_all();
    continuation = false;
  }
  std::string symbols;
  for (std::string_view p : pieces) {
    if (p.empty()) continue;
    symbols.clear();
    detail::append_byte_symbols(p, symbols);
    model.tokenize(symbols, out);
  }
}

void Tokenizer::Impl::encode_text(std::string_view text, bool continuation, std::vector<TokenId>& out) const {
  std::string normalized;
  for (const Segment& raw : split_added(text, raw_patterns)) {
    if (raw.token != nullptr) {
      out.push_back(raw.token->id);
      continue;
    }
    std::string_view piece = text.substr(raw.begin, raw.end - raw.begin);
    if (nfc) {
      normalized = unicode::nfc(piece);
      piece = normalized;
    }
    for (const Segment& seg : split_added(piece, normalized_patterns)) {
      if (seg.token != nullptr) {
        out.push_back(seg.token->id);
      } else {
        pre_tokenize_and_merge(piece.substr(seg.begin, seg.end - seg.begin),
                               continuation && raw.begin == 0 && seg.begin == 0, out);
      }
    }
  }
}

namespace {

[[noreturn]] void throw_invalid_utf8(std::size_t offset) {
  throw Error("text", "invalid UTF-8 at byte " + std::to_string(offset));
}

}  // namespace

std::vector<TokenId> Tokenizer::encode(std::string_view text) const {
  return encode(text, true);
}

std::vector<TokenId> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  const std::size_t bad = unicode::find_invalid_utf8(text);
  if (bad != unicode::kValid) throw_invalid_utf8(bad);
  std::vector<TokenId> ids;
  if (add_special_tokens) {
    for (auto it = impl_->templates.rbegin(); it != impl_->templates.rend(); ++it) {
      ids.insert(ids.end(), it->first.begin(), it->first.end());
    }
  }
  impl_->encode_text(text, false, ids);
  if (add_special_tokens) {
    for (const auto& t : impl_->templates)
      ids.insert(ids.end(), t.second.begin(), t.second.end());
  }
  return ids;
}

// ---- Streaming
// ----------------------------------------------------------------------------------------------
//
// A cut before text[p] is safe when encoding both sides separately gives the same ids as the whole:
//  - the split regex cuts there in any context: p holds U+0020 after a non-space, or the letter / number /
//    other class changes between two non-spaces (not after an apostrophe, which may open a contraction);
//  - NFC cannot reach across: both neighbours are NFC-inert (starters that never compose backwards and have
//    no decomposition), so the normalized text has the same two characters at the cut;
//  - no added token touches p, on the raw text, and, for normalized tokens, on the NFC of a window around p
//    that no raw-matched token intersects. Touching covers single_word's neighbour test; lstrip/rstrip cannot
//    cross because the character before p is not whitespace.
// The piece after a cut continues a pre-token, so ByteLevel's add_prefix_space is suppressed at its start.

std::size_t Tokenizer::Impl::normalized_window() const {
  return normalized_patterns.empty() ? 0 : 4 * normalized_patterns.max_length() + 16;
}

std::size_t Tokenizer::Impl::cut_margin_before() const {
  const std::size_t w = normalized_patterns.empty() ? 0 : normalized_window() + 64;
  return std::max(raw_patterns.max_length(), w) + 4;
}

std::size_t Tokenizer::Impl::cut_margin_after() const {
  return cut_margin_before() + 8;
}

bool Tokenizer::Impl::is_safe_cut(std::string_view text, std::size_t p) const {
  std::size_t before = p, after = p;
  const char32_t d = unicode::previous_code_point(text, before);
  const char32_t c = unicode::next_code_point(text, after);
  const detail::CharClass dc = detail::char_class(d), cc = detail::char_class(c);
  if (dc == detail::CharClass::kSpace) return false;
  if (c != U' ' && (cc == detail::CharClass::kSpace || cc == dc || d == U'\'')) return false;
  if (!unicode::is_nfc_inert(c) || !unicode::is_nfc_inert(d)) return false;

  for (const auto& [pattern, index] : raw_patterns.patterns()) {
    const std::size_t len = pattern.size();
    for (std::size_t s = p >= len ? p - len : 0; s <= p && s + len <= text.size(); ++s) {
      if (text.compare(s, len, pattern) == 0) return false;
    }
  }
  if (normalized_patterns.empty()) return true;

  // A window [a, b) around p bounded by NFC-inert characters, so NFC of each side is exact.
  const std::size_t w = normalized_window();
  if (p < w + 1 || p + w + 1 > text.size()) return false;
  auto inert_at = [&](std::size_t pos) {
    if (unicode::is_continuation_byte(static_cast<unsigned char>(text[pos]))) return false;
    std::size_t q = pos;
    return unicode::is_nfc_inert(unicode::next_code_point(text, q));
  };
  std::size_t a = p - w, b = p + w;
  const std::size_t a_floor = a > 64 ? a - 64 : 0;
  while (a > a_floor && !inert_at(a))
    --a;
  if (!inert_at(a)) return false;
  const std::size_t b_ceiling = std::min(text.size() - 1, b + 64);
  while (b < b_ceiling && !inert_at(b))
    ++b;
  if (!inert_at(b)) return false;
  for (const auto& [pattern, index] : raw_patterns.patterns()) {
    const std::size_t from = a + 1 > pattern.size() ? a + 1 - pattern.size() : 0;
    if (text.substr(from, b + pattern.size() - 1 - from).find(pattern) != std::string_view::npos)
      return false;
  }
  std::string left(text.substr(a, p - a)), right(text.substr(p, b - p));
  if (nfc) {
    left = unicode::nfc(left);
    right = unicode::nfc(right);
  }
  const std::size_t q = left.size();
  const std::string joined = left + right;
  for (const auto& [pattern, index] : normalized_patterns.patterns()) {
    const std::size_t len = pattern.size();
    for (std::size_t s = q >= len ? q - len : 0; s <= q && s + len <= joined.size(); ++s) {
      if (joined.compare(s, len, pattern) == 0) return false;
    }
  }
  return true;
}

namespace {

// Length of the prefix of `s` (valid UTF-8 but for a possibly truncated last character) made of whole
// characters.
std::size_t whole_characters(std::string_view s) {
  const std::size_t n = s.size();
  for (std::size_t back = 1; back <= 4 && back <= n; ++back) {
    const auto b = static_cast<unsigned char>(s[n - back]);
    if (unicode::is_continuation_byte(b)) continue;
    const std::size_t need = b < 0x80 ? 1 : b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : 2;
    return need > back ? n - back : n;
  }
  return n;
}

}  // namespace

void Tokenizer::encode_stream(std::istream& in,
                              const std::function<void(const std::vector<TokenId>&)>& sink) const {
  encode_stream(in, sink, kDefaultStreamChunkBytes, true);
}

void Tokenizer::encode_stream(std::istream& in, const std::function<void(const std::vector<TokenId>&)>& sink,
                              std::size_t chunk_bytes, bool add_special_tokens) const {
  chunk_bytes = std::clamp<std::size_t>(chunk_bytes, 1, std::size_t{1} << 32);
  std::vector<TokenId> ids;
  auto flush = [&] {
    if (!ids.empty()) sink(ids);
    ids.clear();
  };
  if (add_special_tokens) {
    for (auto it = impl_->templates.rbegin(); it != impl_->templates.rend(); ++it) {
      ids.insert(ids.end(), it->first.begin(), it->first.end());
    }
    flush();
  }
  const std::size_t margin_before = impl_->cut_margin_before(), margin_after = impl_->cut_margin_after();
  std::string buf;
  std::size_t base = 0;     // stream offset of buf[0]
  std::size_t checked = 0;  // buf[0, checked) is known valid UTF-8
  std::size_t want = chunk_bytes;
  bool eof = false, continuation = false;
  while (true) {
    while (!eof && buf.size() < want + margin_after) {
      const std::size_t old = buf.size(), need = want + margin_after - old;
      buf.resize(old + need);
      in.read(&buf[old], static_cast<std::streamsize>(need));
      const auto got = static_cast<std::size_t>(in.gcount());
      buf.resize(old + got);
      if (got < need) eof = true;
    }
    if (in.bad()) throw Error("text", "read error after byte " + std::to_string(base + buf.size()));
    const std::size_t bad = unicode::find_invalid_utf8(std::string_view(buf).substr(checked), !eof);
    if (bad != unicode::kValid) throw_invalid_utf8(base + checked + bad);
    if (eof) {
      impl_->encode_text(buf, continuation, ids);
      flush();
      break;
    }
    const std::size_t complete = whole_characters(buf);
    checked = complete;
    const std::string_view text(buf.data(), complete);
    std::size_t cut = std::string::npos;
    for (std::size_t p = complete >= margin_after ? complete - margin_after : 0; p >= margin_before && p > 0;
         --p) {
      if (unicode::is_continuation_byte(static_cast<unsigned char>(text[p]))) continue;
      if (impl_->is_safe_cut(text, p)) {
        cut = p;
        break;
      }
    }
    if (cut == std::string::npos) {  // one pre-token longer than the buffer: it has to be read whole
      want = buf.size() * 2;
      continue;
    }
    impl_->encode_text(text.substr(0, cut), continuation, ids);
    flush();
    buf.erase(0, cut);
    base += cut;
    checked -= cut;
    continuation = true;
    want = chunk_bytes;
  }
  if (add_special_tokens) {
    for (const auto& t : impl_->templates)
      ids.insert(ids.end(), t.second.begin(), t.second.end());
    flush();
  }
}

// ---- Decoding and lookups
// -----------------------------------------------------------------------------------

std::string Tokenizer::decode(const std::vector<TokenId>& ids, bool skip_special_tokens) const {
  const std::string bytes = decode_bytes(ids, skip_special_tokens);
  return impl_->byte_level_decoder ? unicode::utf8_lossy(bytes) : bytes;
}

std::string Tokenizer::decode_bytes(const std::vector<TokenId>& ids, bool skip_special_tokens) const {
  std::vector<const std::string*> tokens;
  tokens.reserve(ids.size());
  for (TokenId id : ids) {
    const std::string* token = nullptr;
    if (const auto it = impl_->added_by_id.find(id); it != impl_->added_by_id.end()) {
      token = &impl_->added[it->second].content;
    } else if (id >= 0 && static_cast<std::size_t>(id) < impl_->model.id_to_token.size() &&
               !impl_->model.id_to_token[id].empty()) {
      token = &impl_->model.id_to_token[id];
    }
    if (token == nullptr) continue;  // unknown ids are dropped, as the library does
    if (skip_special_tokens && impl_->special_contents.count(*token)) continue;
    tokens.push_back(token);
  }
  std::string out;
  if (!impl_->byte_level_decoder) {
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      if (i > 0) out += ' ';
      out += *tokens[i];
    }
    return out;
  }
  // Each token maps back to bytes when all its characters are byte-level symbols, else stays as it is
  // (added tokens such as "  " or "<|endoftext|>"); the bytes are then read as UTF-8, lossily.
  std::string bytes, token_bytes;
  for (const std::string* token : tokens) {
    token_bytes.clear();
    bool all_symbols = true;
    for (std::size_t pos = 0; pos < token->size();) {
      const int b = detail::symbol_byte(unicode::next_code_point(*token, pos));
      if (b < 0) {
        all_symbols = false;
        break;
      }
      token_bytes.push_back(static_cast<char>(b));
    }
    bytes += all_symbols ? token_bytes : *token;
  }
  return bytes;
}

std::size_t Tokenizer::vocab_size() const {
  return static_cast<std::size_t>(impl_->max_id + 1);
}

std::optional<TokenId> Tokenizer::token_to_id(std::string_view token) const {
  const std::string key(token);
  if (const auto it = impl_->added_by_content.find(key); it != impl_->added_by_content.end()) {
    return impl_->added[it->second].id;
  }
  if (const auto it = impl_->model.vocab.find(key); it != impl_->model.vocab.end()) return it->second;
  return std::nullopt;
}

std::string Tokenizer::id_to_token(TokenId id) const {
  if (const auto it = impl_->added_by_id.find(id); it != impl_->added_by_id.end()) {
    return impl_->added[it->second].content;
  }
  if (id >= 0 && static_cast<std::size_t>(id) < impl_->model.id_to_token.size())
    return impl_->model.id_to_token[id];
  return "";
}

std::optional<TokenId> Tokenizer::eos_id() const {
  return token_to_id("<|endoftext|>");
}

bool Tokenizer::is_special(TokenId id) const {
  const auto it = impl_->added_by_id.find(id);
  return it != impl_->added_by_id.end() && impl_->added[it->second].special;
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

}  // namespace hedgelab::io
