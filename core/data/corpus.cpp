#include "core/data/corpus.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "core/common/error.h"
#include "core/data/sha256.h"
#include "core/data/token_storage.h"

namespace hedgelab::data {

namespace detail {

void TokenStorage::copy(int64_t begin, int64_t count, int64_t* out) const {
  if (u16) {
    std::copy(u16 + begin, u16 + begin + count, out);
  } else {
    std::copy(u32 + begin, u32 + begin + count, out);
  }
}

}  // namespace detail

namespace {

using detail::TextSource;
using detail::TokenStorage;

bool has_extension(const std::filesystem::path& p, std::string_view ext) {
  std::string e = p.extension().string();
  std::transform(e.begin(), e.end(), e.begin(), [](unsigned char c) { return std::tolower(c); });
  return e == ext;
}

std::vector<TextSource> folder_sources(const std::filesystem::path& dir) {
  std::vector<TextSource> sources;
  std::error_code ec;
  std::filesystem::recursive_directory_iterator it(
      dir, std::filesystem::directory_options::skip_permission_denied, ec);
  if (ec) throw Error(dir.string(), "cannot list the folder: " + ec.message());
  for (; it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) throw Error(dir.string(), "cannot list the folder: " + ec.message());
    const std::filesystem::path& p = it->path();
    if (p.filename().string().rfind('.', 0) == 0) {  // hidden files and folders (.git, editor swap files)
      if (it->is_directory(ec)) it.disable_recursion_pending();
      continue;
    }
    if (!it->is_regular_file(ec)) continue;
    const bool jsonl = has_extension(p, ".jsonl");
    if (jsonl || has_extension(p, ".txt")) sources.push_back({p, jsonl});
  }
  if (ec) throw Error(dir.string(), "cannot list the folder: " + ec.message());
  // Byte order of the path strings: the same on every machine, unlike the directory's own order.
  std::sort(sources.begin(), sources.end(),
            [](const TextSource& a, const TextSource& b) { return a.path.string() < b.path.string(); });
  if (sources.empty()) throw Error(dir.string(), "holds no .txt or .jsonl files");
  return sources;
}

std::shared_ptr<TokenStorage> map_bin(const std::filesystem::path& path, BinDType dtype,
                                      std::size_t vocab_size) {
  auto map = std::make_unique<MappedFile>(path);
  const std::size_t item = dtype == BinDType::UInt16 ? 2 : 4;
  const char* type = dtype == BinDType::UInt16 ? "uint16" : "uint32";
  if (map->size() % item != 0) {
    throw Error(path.string(), "holds " + std::to_string(map->size()) + " bytes, not a multiple of " +
                                   std::to_string(item) + " (" + type + " token ids); check bin_dtype");
  }
  auto storage = std::make_shared<TokenStorage>();
  storage->size = static_cast<int64_t>(map->size() / item);
  if (dtype == BinDType::UInt16) {
    storage->u16 = reinterpret_cast<const uint16_t*>(map->data());
  } else {
    storage->u32 = reinterpret_cast<const uint32_t*>(map->data());
  }
  storage->map = std::move(map);
  if (vocab_size > 0) {
    for (int64_t i = 0; i < storage->size; ++i) {
      const uint32_t id = storage->u16 ? storage->u16[i] : storage->u32[i];
      if (id >= vocab_size) {
        throw Error(path.string(), "token " + std::to_string(i) + " has id " + std::to_string(id) +
                                       ", expected ids below the vocabulary size " +
                                       std::to_string(vocab_size));
      }
    }
  }
  if (dtype == BinDType::UInt32) {
    for (int64_t i = 0; i < storage->size; ++i) {  // ids are int32 everywhere downstream
      if (storage->u32[i] > uint32_t(INT32_MAX)) {
        throw Error(path.string(), "token " + std::to_string(i) + " has id " +
                                       std::to_string(storage->u32[i]) + ", above the largest supported id " +
                                       std::to_string(INT32_MAX));
      }
    }
  }
  return storage;
}

std::shared_ptr<TokenStorage> tokenize_in_memory(const std::vector<TextSource>& sources,
                                                 const TextEncoder& encoder, const CorpusOptions& options,
                                                 int64_t& documents) {
  auto storage = std::make_shared<TokenStorage>();
  documents = detail::tokenize_sources(sources, encoder, options, [&](const std::vector<int32_t>& ids) {
    storage->owned.insert(storage->owned.end(), ids.begin(), ids.end());
  });
  storage->owned.shrink_to_fit();
  storage->u32 = storage->owned.data();
  storage->size = static_cast<int64_t>(storage->owned.size());
  return storage;
}

bool writable_folder(const std::filesystem::path& dir, std::string& why) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    why = ec.message();
    return false;
  }
  if (::access(dir.c_str(), W_OK | X_OK) != 0) {
    why = "no write permission";
    return false;
  }
  return true;
}

std::string plural(int64_t n, const char* word) {
  return std::to_string(n) + " " + word + (n == 1 ? "" : "s");
}

}  // namespace

TextEncoder byte_encoder(std::optional<int32_t> eos) {
  TextEncoder e;
  e.encode = [](std::string_view text) {
    std::vector<int32_t> ids(text.size());
    std::transform(text.begin(), text.end(), ids.begin(),
                   [](char c) { return int32_t(static_cast<unsigned char>(c)); });
    return ids;
  };
  e.eos = eos;
  e.fingerprint = "bytes";
  e.vocab_size = eos && *eos >= 256 ? static_cast<std::size_t>(*eos) + 1 : 256;
  return e;
}

const char* cache_outcome_name(CacheOutcome outcome) {
  switch (outcome) {
    case CacheOutcome::NotUsed:
      return "not used";
    case CacheOutcome::Hit:
      return "hit";
    case CacheOutcome::Built:
      return "built";
    case CacheOutcome::Unwritable:
      return "unwritable";
  }
  return "?";
}

// ---- TokenView

TokenView::TokenView(std::shared_ptr<const detail::TokenStorage> storage, std::vector<TokenRange> ranges,
                     std::string name)
    : storage_(std::move(storage)), ranges_(std::move(ranges)), name_(std::move(name)) {
  offsets_.reserve(ranges_.size());
  for (const TokenRange& r : ranges_) {
    offsets_.push_back(size_);
    size_ += r.size();
  }
}

std::size_t TokenView::range_index(int64_t i) const {
  // The last range whose offset is <= i.
  return static_cast<std::size_t>(std::upper_bound(offsets_.begin(), offsets_.end(), i) - offsets_.begin()) -
         1;
}

int32_t TokenView::operator[](int64_t i) const {
  return storage_->get(stream_position(i));
}

int64_t TokenView::stream_position(int64_t i) const {
  const std::size_t r = range_index(i);
  return ranges_[r].begin + (i - offsets_[r]);
}

void TokenView::copy_to(int64_t begin, int64_t count, int64_t* out) const {
  if (begin < 0 || count < 0 || begin + count > size_) {
    throw Error(name_, "tokens [" + std::to_string(begin) + ", " + std::to_string(begin + count) +
                           ") are outside the view of " + std::to_string(size_) + " tokens");
  }
  if (count == 0) return;
  for (std::size_t r = range_index(begin); count > 0; ++r) {
    const int64_t local = begin - offsets_[r];
    const int64_t take = std::min(count, ranges_[r].size() - local);
    storage_->copy(ranges_[r].begin + local, take, out);
    out += take;
    begin += take;
    count -= take;
  }
}

std::vector<int32_t> TokenView::to_vector() const {
  std::vector<int32_t> v;
  v.reserve(static_cast<std::size_t>(size_));
  for (const TokenRange& r : ranges_) {
    for (int64_t i = r.begin; i < r.end; ++i)
      v.push_back(storage_->get(i));
  }
  return v;
}

void TokenView::require_tokens(int64_t n, const std::string& what) const {
  if (size_ < n) {
    throw Error(
        name_.empty() ? std::string("corpus") : name_,
        "has " + plural(size_, "token") + ", fewer than the " + std::to_string(n) + " needed for " + what);
  }
}

// ---- split

int64_t heldout_period(double heldout_fraction) {
  if (!(heldout_fraction >= 0.0 && heldout_fraction <= 0.5)) {
    throw Error("heldout_fraction", "expected a number in [0, 0.5], got " + std::to_string(heldout_fraction));
  }
  if (heldout_fraction == 0.0) return 0;
  return static_cast<int64_t>(std::llround(1.0 / heldout_fraction));
}

SplitRanges split_ranges(int64_t n_tokens, int64_t block_tokens, double heldout_fraction) {
  if (block_tokens < 1)
    throw Error("split_block_tokens", "expected a positive count, got " + std::to_string(block_tokens));
  const int64_t k = heldout_period(heldout_fraction);
  // A corpus shorter than 2k blocks gets smaller blocks, so that it still has both a train and a held-out
  // part.
  if (k > 0) block_tokens = std::min(block_tokens, std::max<int64_t>(1, (n_tokens + 2 * k - 1) / (2 * k)));
  SplitRanges split;
  const auto append = [](std::vector<TokenRange>& list, TokenRange r) {
    if (!list.empty() && list.back().end == r.begin) {
      list.back().end = r.end;
    } else {
      list.push_back(r);
    }
  };
  for (int64_t b = 0, begin = 0; begin < n_tokens; ++b, begin += block_tokens) {
    const TokenRange r{begin, std::min(n_tokens, begin + block_tokens)};
    append(k > 0 && b % k == 0 ? split.heldout : split.train, r);
  }
  return split;
}

// ---- TokenCorpus

int64_t TokenCorpus::size() const {
  return storage_ ? storage_->size : 0;
}

int32_t TokenCorpus::operator[](int64_t i) const {
  return storage_->get(i);
}

TokenView TokenCorpus::all() const {
  std::vector<TokenRange> r;
  if (size() > 0) r.push_back({0, size()});
  return TokenView(storage_, std::move(r), display_name_);
}

TokenView TokenCorpus::train() const {
  return TokenView(storage_, split_.train, display_name_ + " (train split)");
}

TokenView TokenCorpus::heldout() const {
  return TokenView(storage_, split_.heldout, display_name_ + " (held-out split)");
}

void TokenCorpus::require_tokens(int64_t n, const std::string& what) const {
  all().require_tokens(n, what);
}

// ---- loading

std::filesystem::path resolve_cache_dir(const CorpusOptions& options) {
  if (!options.cache_dir.empty()) return options.cache_dir;
  const auto env = [](const char* name) -> std::string {
    const char* v = std::getenv(name);
    return v ? v : "";
  };
  if (const std::string d = env("HEDGELAB_CACHE_DIR"); !d.empty()) return d;
  if (const std::string d = env("XDG_CACHE_HOME"); !d.empty()) return std::filesystem::path(d) / "hedgelab";
  if (const std::string d = env("HOME"); !d.empty()) return std::filesystem::path(d) / ".cache" / "hedgelab";
  return {};
}

TokenCorpus load_corpus(const std::filesystem::path& path, const TextEncoder& encoder,
                        const CorpusOptions& options) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(status)) throw Error(path.string(), "does not exist");
  // Validated before the (possibly long) tokenization.
  split_ranges(0, options.split_block_tokens, options.heldout_fraction);

  TokenCorpus corpus;
  corpus.source_ = path;
  corpus.display_name_ = path.string();
  std::shared_ptr<const TokenStorage> storage;

  if (!std::filesystem::is_directory(status) && has_extension(path, ".bin")) {
    storage = map_bin(path, options.bin_dtype, encoder.vocab_size);
  } else {
    std::vector<TextSource> sources;
    if (std::filesystem::is_directory(status)) {
      sources = folder_sources(path);
    } else {
      sources.push_back({path, has_extension(path, ".jsonl")});
    }

    std::filesystem::path cache_file;
    if (options.use_cache && !encoder.fingerprint.empty()) {
      const std::filesystem::path dir = resolve_cache_dir(options);
      if (dir.empty()) {
        spdlog::warn("no cache folder (set HEDGELAB_CACHE_DIR or HOME); tokenizing {} without a cache",
                     path.string());
      } else {
        const std::filesystem::path canonical = std::filesystem::weakly_canonical(path, ec);
        const detail::CacheKey key = detail::cache_key(ec ? path : canonical, sources, encoder, options);
        cache_file = dir / "tokens" / (to_hex(key.data(), key.size()) + ".tokens");
        if (auto cached = detail::read_token_cache(cache_file, key)) {
          storage = std::move(cached->storage);
          corpus.documents_ = cached->documents;
          corpus.cache_outcome_ = CacheOutcome::Hit;
        } else {
          std::string why;
          corpus.cache_outcome_ = CacheOutcome::Unwritable;
          if (!writable_folder(cache_file.parent_path(), why)) {
            spdlog::warn("cache folder {} is not writable ({}); tokenizing without a cache",
                         cache_file.parent_path().string(), why);
          } else if (detail::write_token_cache(cache_file, key, sources, encoder, options)) {
            if (auto built = detail::read_token_cache(cache_file, key)) {
              storage = std::move(built->storage);
              corpus.documents_ = built->documents;
              corpus.cache_outcome_ = CacheOutcome::Built;
            }
          }
        }
      }
    }
    if (!storage) {
      int64_t documents = 0;
      storage = tokenize_in_memory(sources, encoder, options, documents);
      corpus.documents_ = documents;
      if (corpus.cache_outcome_ != CacheOutcome::Unwritable) corpus.cache_outcome_ = CacheOutcome::NotUsed;
    }
    if (corpus.cache_outcome_ == CacheOutcome::Hit || corpus.cache_outcome_ == CacheOutcome::Built) {
      corpus.cache_file_ = cache_file;
    }
  }

  if (storage->size == 0) throw Error(path.string(), "holds no tokens");
  corpus.storage_ = std::move(storage);
  corpus.split_ = split_ranges(corpus.size(), options.split_block_tokens, options.heldout_fraction);
  spdlog::info("corpus {}: {}{}, token cache {}", path.string(), plural(corpus.size(), "token"),
               corpus.documents_ > 0 ? " in " + plural(corpus.documents_, "document") : std::string(),
               cache_outcome_name(corpus.cache_outcome_));
  return corpus;
}

}  // namespace hedgelab::data
