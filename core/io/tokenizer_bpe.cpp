// The BPE model as the tokenizers library runs it: characters looked up (with continuing_subword_prefix,
// end_of_word_suffix, byte_fallback, unk), then pairs merged lowest rank first, leftmost on ties.
#include <queue>

#include "core/common/error.h"
#include "core/io/tokenizer_internal.h"
#include "core/io/unicode.h"

namespace hedgelab::io::detail {

namespace {

std::uint64_t pair_key(TokenId a, TokenId b) {
  return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(a)) << 32) | static_cast<std::uint32_t>(b);
}

std::string json_quoted(const std::string& s) {
  return nlohmann::json(s).dump(-1, ' ', false, Json::error_handler_t::replace);
}

}  // namespace

void BpeModel::build(const std::string& model_where) {
  merge_map_.clear();
  merge_map_.reserve(merges.size());
  const std::size_t prefix_len = continuing_subword_prefix ? continuing_subword_prefix->size() : 0;
  for (std::size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [a, b] = merges[rank];
    const std::string at = model_where + ".merges[" + std::to_string(rank) + "]";
    const auto ia = vocab.find(a);
    if (ia == vocab.end()) throw Error(at, "merge part " + json_quoted(a) + " is not in model.vocab");
    const auto ib = vocab.find(b);
    if (ib == vocab.end()) throw Error(at, "merge part " + json_quoted(b) + " is not in model.vocab");
    if (b.compare(0, prefix_len, continuing_subword_prefix.value_or("")) != 0) {
      throw Error(at, "merge part " + json_quoted(b) + " lacks the continuing_subword_prefix");
    }
    const std::string merged = a + b.substr(prefix_len);
    const auto im = vocab.find(merged);
    if (im == vocab.end()) throw Error(at, "merge result " + json_quoted(merged) + " is not in model.vocab");
    // A repeated pair keeps its last rank, as the library's map does.
    merge_map_[pair_key(ia->second, ib->second)] = MergeInfo{static_cast<std::uint32_t>(rank), im->second};
  }
  unk_id_.reset();
  if (unk_token) {
    const auto it = vocab.find(*unk_token);
    if (it == vocab.end())
      throw Error(model_where + ".unk_token", json_quoted(*unk_token) + " is not in model.vocab");
    unk_id_ = it->second;
  }
  std::lock_guard<std::mutex> lock(cache_mutex_);
  cache_.clear();
}

void BpeModel::tokenize(std::string_view word, std::vector<TokenId>& out) const {
  if (word.empty()) return;
  if (ignore_merges) {
    const auto it = vocab.find(std::string(word));
    if (it != vocab.end()) {
      out.push_back(it->second);
      return;
    }
  }
  const bool cacheable = word.size() <= kCacheMaxWordBytes;
  std::string key;
  if (cacheable) {
    key.assign(word);
    std::lock_guard<std::mutex> lock(cache_mutex_);
    const auto it = cache_.find(key);
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const std::size_t first = out.size();
  merge_word(word, out);
  if (cacheable) {
    std::vector<TokenId> ids(out.begin() + static_cast<std::ptrdiff_t>(first), out.end());
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_.size() >= kCacheCapacity) cache_.clear();  // bounded: start over rather than grow
    cache_.emplace(std::move(key), std::move(ids));
  }
}

void BpeModel::merge_word(std::string_view w, std::vector<TokenId>& out) const {
  struct Symbol {
    TokenId id;
    int prev, next;
    bool alive;
  };
  std::vector<Symbol> symbols;
  symbols.reserve(w.size());
  auto add = [&](TokenId id) {
    const int index = static_cast<int>(symbols.size());
    symbols.push_back(Symbol{id, index - 1, -1, true});
    if (index > 0) symbols[index - 1].next = index;
  };
  TokenId pending_unk = -1;  // an unk waiting to be added (fused when fuse_unk)
  std::string s;
  for (std::size_t pos = 0; pos < w.size();) {
    const std::size_t begin = pos;
    unicode::next_code_point(w, pos);
    s.clear();
    if (begin != 0 && continuing_subword_prefix) s += *continuing_subword_prefix;
    s.append(w, begin, pos - begin);
    if (pos == w.size() && end_of_word_suffix) s += *end_of_word_suffix;
    const auto it = vocab.find(s);
    if (it != vocab.end()) {
      if (pending_unk >= 0) add(pending_unk);
      pending_unk = -1;
      add(it->second);
      continue;
    }
    if (byte_fallback) {
      std::vector<TokenId> bytes;
      for (unsigned char b : s) {
        static const char* kHex = "0123456789ABCDEF";
        const std::string code = std::string("<0x") + kHex[b >> 4] + kHex[b & 15] + ">";
        const auto bt = vocab.find(code);
        if (bt == vocab.end()) break;
        bytes.push_back(bt->second);
      }
      if (bytes.size() == s.size()) {
        // The library adds these without flushing a pending unk first; kept for identical output.
        for (TokenId id : bytes)
          add(id);
        continue;
      }
    }
    if (unk_id_) {
      if (pending_unk >= 0 && !fuse_unk) add(pending_unk);
      pending_unk = *unk_id_;
    }
    // Without unk_token an unknown character is dropped, as in the library.
  }
  if (pending_unk >= 0) add(pending_unk);

  struct Candidate {
    std::uint32_t rank;
    int pos;
    TokenId new_id;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
  auto lookup = [&](int left) -> const MergeInfo* {
    const int right = symbols[left].next;
    if (right < 0) return nullptr;
    const auto it = merge_map_.find(pair_key(symbols[left].id, symbols[right].id));
    return it == merge_map_.end() ? nullptr : &it->second;
  };
  for (int i = 0; i + 1 < static_cast<int>(symbols.size()); ++i) {
    if (const MergeInfo* m = lookup(i)) queue.push(Candidate{m->rank, i, m->new_id});
  }
  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.pos];
    if (!left.alive || left.next < 0) continue;
    const MergeInfo* m = lookup(top.pos);
    if (m == nullptr || m->new_id != top.new_id) continue;  // stale: a neighbour merged meanwhile
    Symbol& right = symbols[left.next];
    left.id = top.new_id;
    right.alive = false;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.pos;
    if (left.prev >= 0) {
      if (const MergeInfo* pm = lookup(left.prev)) queue.push(Candidate{pm->rank, left.prev, pm->new_id});
    }
    if (const MergeInfo* nm = lookup(top.pos)) queue.push(Candidate{nm->rank, top.pos, nm->new_id});
  }
  for (const Symbol& sym : symbols) {
    if (sym.alive) out.push_back(sym.id);
  }
}

}  // namespace hedgelab::io::detail
