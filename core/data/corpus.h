// Token corpora: UTF-8 text files and folders, JSONL with a text field, or pre-tokenized .bin files, turned
// into one id stream (tokenization cached on disk), and the deterministic train / held-out split over it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace hedgelab::data {

// What core/data needs of a tokenizer, as a value so that this library does not depend on one.
struct TextEncoder {
  std::function<std::vector<int32_t>(std::string_view)> encode;  // text → ids
  std::optional<int32_t> eos;                                    // appended after every document when set
  std::string fingerprint;     // identifies the tokenizer for the cache key; empty disables the cache
  std::size_t vocab_size = 0;  // ids must be < vocab_size (0 = unchecked)
};

// id = byte value (vocab 256, or 257 with `eos` = 256): for tests and tokenizer-free experiments.
TextEncoder byte_encoder(std::optional<int32_t> eos = std::nullopt);

enum class BinDType { UInt16, UInt32 };

struct CorpusOptions {
  std::string text_field = "text";        // the JSONL field holding a document's text
  BinDType bin_dtype = BinDType::UInt16;  // element type of .bin files (nanoGPT writes uint16)
  bool use_cache = true;
  std::filesystem::path cache_dir;  // empty: $HEDGELAB_CACHE_DIR, $XDG_CACHE_HOME/hedgelab, ~/.cache/hedgelab
  std::size_t text_piece_bytes = std::size_t{4} << 20;  // large text is read and encoded in pieces this big
  int64_t split_block_tokens = 65536;  // the held-out split works on blocks of this many tokens
  double heldout_fraction = 0.05;      // every round(1/fraction)-th block is held out; 0 = none
};

enum class CacheOutcome {
  NotUsed,     // .bin corpus, caching off, or the encoder has no fingerprint
  Hit,         // read back from the cache
  Built,       // tokenized and written to the cache
  Unwritable,  // tokenized in memory: the cache could not be written (a warning was logged)
};
const char* cache_outcome_name(CacheOutcome outcome);

// Half-open range [begin, end) of positions in a corpus's id stream.
struct TokenRange {
  int64_t begin = 0;
  int64_t end = 0;
  int64_t size() const { return end - begin; }
  bool operator==(const TokenRange& o) const { return begin == o.begin && end == o.end; }
};

namespace detail {
struct TokenStorage;
}

// A part of a corpus's stream (sorted, disjoint ranges) with random access by view index; shares the
// stream, never copies it, and keeps it alive.
class TokenView {
 public:
  TokenView() = default;

  int64_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  int32_t operator[](int64_t i) const;  // i in [0, size()), unchecked
  // View tokens [begin, begin + count) into `out`, across range boundaries; throws when out of the view.
  void copy_to(int64_t begin, int64_t count, int64_t* out) const;
  std::vector<int32_t> to_vector() const;    // a copy: for small views (tests, probes)
  int64_t stream_position(int64_t i) const;  // where view index i lies in the corpus stream

  const std::vector<TokenRange>& ranges() const { return ranges_; }
  // View index of each range's first token.
  const std::vector<int64_t>& range_offsets() const { return offsets_; }
  const std::string& name() const { return name_; }  // "kjv.txt (train split)", for messages

  // Throws `NAME: has N tokens, fewer than the M needed for WHAT` when size() < n.
  void require_tokens(int64_t n, const std::string& what) const;

 private:
  friend class TokenCorpus;
  TokenView(std::shared_ptr<const detail::TokenStorage> storage, std::vector<TokenRange> ranges,
            std::string name);
  std::size_t range_index(int64_t i) const;

  std::shared_ptr<const detail::TokenStorage> storage_;
  std::vector<TokenRange> ranges_;
  std::vector<int64_t> offsets_;
  int64_t size_ = 0;
  std::string name_;
};

struct SplitRanges {
  std::vector<TokenRange> train;
  std::vector<TokenRange> heldout;
};

// k = round(1 / heldout_fraction), 0 when the fraction is 0. Throws unless 0 <= fraction <= 0.5.
int64_t heldout_period(double heldout_fraction);
// The stream cut into blocks of `block_tokens` (the last one may be short; a corpus of fewer than 2k blocks
// uses blocks of ceil(n / 2k) instead, so it has both parts); block b is held out when b % k == 0, so any
// non-empty corpus has a held-out block; adjacent train blocks merge into one range.
SplitRanges split_ranges(int64_t n_tokens, int64_t block_tokens, double heldout_fraction);

class TokenCorpus {
 public:
  TokenCorpus() = default;  // empty

  int64_t size() const;
  int32_t operator[](int64_t i) const;  // i in [0, size()), unchecked

  TokenView all() const;
  TokenView train() const;
  TokenView heldout() const;
  const SplitRanges& split() const { return split_; }

  const std::filesystem::path& source() const { return source_; }
  int64_t documents() const { return documents_; }  // 0 for .bin corpora
  CacheOutcome cache_outcome() const { return cache_outcome_; }
  bool cache_hit() const { return cache_outcome_ == CacheOutcome::Hit; }
  const std::filesystem::path& cache_file() const { return cache_file_; }  // empty when not cached

  // Throws `SOURCE: has N tokens, fewer than the M needed for WHAT` when size() < n.
  void require_tokens(int64_t n, const std::string& what) const;

 private:
  friend TokenCorpus load_corpus(const std::filesystem::path&, const TextEncoder&, const CorpusOptions&);
  std::shared_ptr<const detail::TokenStorage> storage_;
  std::filesystem::path source_;
  std::string display_name_;
  SplitRanges split_;
  int64_t documents_ = 0;
  CacheOutcome cache_outcome_ = CacheOutcome::NotUsed;
  std::filesystem::path cache_file_;
};

// Reads `path`: a folder (every .txt/.jsonl file below it, recursively, in sorted path order, hidden entries
// skipped), a .jsonl file (one document per line), a .bin file of pre-tokenized ids, or any other file as one
// UTF-8 document. Throws hedgelab::Error naming the file (and line or byte) on bad input or an empty corpus.
TokenCorpus load_corpus(const std::filesystem::path& path, const TextEncoder& encoder,
                        const CorpusOptions& options = {});

// options.cache_dir, else $HEDGELAB_CACHE_DIR, $XDG_CACHE_HOME/hedgelab, ~/.cache/hedgelab; empty if none.
std::filesystem::path resolve_cache_dir(const CorpusOptions& options);

// kjv.txt in $HEDGELAB_DATA_DIR, <source>/data or <install prefix>/share/hedgelab/data; throws a one-line
// Error pointing at scripts/extract-kjv.sh when none exists.
std::filesystem::path default_corpus_path();

}  // namespace hedgelab::data
