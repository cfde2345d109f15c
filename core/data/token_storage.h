// Internal to core/data: the id stream behind TokenCorpus and TokenView, and the pieces load_corpus uses.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/data/corpus.h"
#include "core/data/mapped_file.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "core/data maps little-endian token files directly and needs a little-endian host"
#endif

namespace hedgelab::data::detail {

// Ids as uint16 or uint32, in a memory map (.bin, cache file) or owned (tokenized without a cache).
struct TokenStorage {
  std::unique_ptr<MappedFile> map;
  std::vector<uint32_t> owned;
  const uint16_t* u16 = nullptr;
  const uint32_t* u32 = nullptr;
  int64_t size = 0;

  int32_t get(int64_t i) const { return u16 ? int32_t(u16[i]) : int32_t(u32[i]); }
  void copy(int64_t begin, int64_t count, int64_t* out) const;
};

// A source file of a text corpus and how to read it.
struct TextSource {
  std::filesystem::path path;
  bool jsonl = false;
};

// Receives each document's ids (EOS included) in order, already checked against the vocabulary.
using IdSink = std::function<void(const std::vector<int32_t>&)>;

// Tokenizes every source in order; returns the number of non-empty documents.
int64_t tokenize_sources(const std::vector<TextSource>& sources, const TextEncoder& encoder,
                         const CorpusOptions& options, const IdSink& sink);

// Order-sensitive checksum of a token cache's ids, so that a damaged cache file is noticed and rebuilt.
class IdChecksum {
 public:
  void update(const uint32_t* ids, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i)
      h_ = (h_ ^ ids[i]) * 0x100000001b3ull;
  }
  uint64_t value() const { return h_; }

 private:
  uint64_t h_ = 0xcbf29ce484222325ull;
};

using CacheKey = std::array<uint8_t, 32>;

CacheKey cache_key(const std::filesystem::path& canonical_source, const std::vector<TextSource>& sources,
                   const TextEncoder& encoder, const CorpusOptions& options);

struct CachedTokens {
  std::shared_ptr<TokenStorage> storage;
  int64_t documents = 0;
};

// nullopt when the file is absent; a damaged or mismatched file is logged and reported as nullopt too.
std::optional<CachedTokens> read_token_cache(const std::filesystem::path& file, const CacheKey& key);

// Tokenizes `sources` straight into `file` (atomically). Returns false, with a warning logged, when the file
// cannot be written; errors of the sources themselves propagate.
bool write_token_cache(const std::filesystem::path& file, const CacheKey& key,
                       const std::vector<TextSource>& sources, const TextEncoder& encoder,
                       const CorpusOptions& options);

}  // namespace hedgelab::data::detail
