// The tokenization cache: a 128-byte header (magic, version, counts, checksum, key) then raw uint32 ids.
#include <spdlog/spdlog.h>

#include <cstring>
#include <ostream>
#include <stdexcept>

#include "core/common/error.h"
#include "core/data/sha256.h"
#include "core/data/token_storage.h"
#include "core/util/atomic_file.h"

namespace hedgelab::data::detail {

namespace {

constexpr char kMagic[8] = {'H', 'L', 'T', 'O', 'K', 'E', 'N', 'S'};
constexpr uint32_t kVersion = 1;
constexpr std::size_t kHeaderBytes = 128;  // keeps the ids 4-byte aligned in the map

// Field offsets in the header; all integers little-endian.
constexpr std::size_t kOffVersion = 8, kOffHeaderBytes = 12, kOffTokens = 16, kOffDocuments = 24,
                      kOffChecksum = 32, kOffKey = 40;

template <typename T>
T load(const std::byte* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}
template <typename T>
void store(char* p, T v) {
  std::memcpy(p, &v, sizeof(T));
}

std::string header(const CacheKey& key, uint64_t tokens, uint64_t documents, uint64_t checksum) {
  std::string h(kHeaderBytes, '\0');
  std::memcpy(h.data(), kMagic, sizeof(kMagic));
  store<uint32_t>(h.data() + kOffVersion, kVersion);
  store<uint32_t>(h.data() + kOffHeaderBytes, kHeaderBytes);
  store<uint64_t>(h.data() + kOffTokens, tokens);
  store<uint64_t>(h.data() + kOffDocuments, documents);
  store<uint64_t>(h.data() + kOffChecksum, checksum);
  std::memcpy(h.data() + kOffKey, key.data(), key.size());
  return h;
}

// A failure of the cache file itself, as opposed to one of the corpus (which must reach the user).
struct CacheWriteFailed : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace

CacheKey cache_key(const std::filesystem::path& canonical_source, const std::vector<TextSource>& sources,
                   const TextEncoder& encoder, const CorpusOptions& options) {
  // Everything that changes the ids: the files (by path, size and modification time), the tokenizer, EOS,
  // the JSONL field and the piece size (pieces are cut where the tokenizer cuts, but make it exact).
  Sha256 sha;
  const auto line = [&](const std::string& s) {
    sha.update(s);
    sha.update("\n", 1);
  };
  line("hedgelab token cache v" + std::to_string(kVersion));
  line("source " + canonical_source.string());
  for (const TextSource& s : sources) {
    std::error_code ec;
    const auto size = std::filesystem::file_size(s.path, ec);
    const auto mtime = std::filesystem::last_write_time(s.path, ec).time_since_epoch().count();
    std::error_code canon_ec;
    const std::filesystem::path canonical = std::filesystem::weakly_canonical(s.path, canon_ec);
    line("file " + (canon_ec ? s.path : canonical).string() + (s.jsonl ? " jsonl " : " text ") +
         std::to_string(size) + " " + std::to_string(mtime));
  }
  line("tokenizer " + encoder.fingerprint);
  line("eos " + (encoder.eos ? std::to_string(*encoder.eos) : std::string("none")));
  line("field " + options.text_field);
  line("piece " + std::to_string(options.text_piece_bytes));
  return sha.digest();
}

std::optional<CachedTokens> read_token_cache(const std::filesystem::path& file, const CacheKey& key) {
  std::error_code ec;
  if (!std::filesystem::exists(file, ec)) return std::nullopt;
  const auto reject = [&](const std::string& why) -> std::optional<CachedTokens> {
    spdlog::warn("token cache {} ignored ({}); tokenizing again", file.string(), why);
    return std::nullopt;
  };
  std::unique_ptr<MappedFile> map;
  try {
    map = std::make_unique<MappedFile>(file);
  } catch (const Error& e) {
    return reject(e.what());
  }
  const std::byte* p = map->data();
  if (map->size() < kHeaderBytes) return reject("shorter than its header");
  if (std::memcmp(p, kMagic, sizeof(kMagic)) != 0) return reject("not a HedgeLab token cache");
  if (load<uint32_t>(p + kOffVersion) != kVersion || load<uint32_t>(p + kOffHeaderBytes) != kHeaderBytes) {
    return reject("written by another version");
  }
  if (std::memcmp(p + kOffKey, key.data(), key.size()) != 0) return reject("made for other input");
  const uint64_t tokens = load<uint64_t>(p + kOffTokens);
  if (tokens > (map->size() - kHeaderBytes) / 4 || map->size() != kHeaderBytes + tokens * 4) {
    return reject("holds " + std::to_string(map->size()) + " bytes, its header says " +
                  std::to_string(kHeaderBytes + tokens * 4));
  }
  const auto* ids = reinterpret_cast<const uint32_t*>(p + kHeaderBytes);
  IdChecksum checksum;
  checksum.update(ids, tokens);
  if (checksum.value() != load<uint64_t>(p + kOffChecksum)) return reject("checksum mismatch");

  auto storage = std::make_shared<TokenStorage>();
  storage->u32 = ids;
  storage->size = static_cast<int64_t>(tokens);
  storage->map = std::move(map);
  return CachedTokens{std::move(storage), static_cast<int64_t>(load<uint64_t>(p + kOffDocuments))};
}

bool write_token_cache(const std::filesystem::path& file, const CacheKey& key,
                       const std::vector<TextSource>& sources, const TextEncoder& encoder,
                       const CorpusOptions& options) {
  bool source_failed = false;
  try {
    util::write_file_atomically(file, [&](std::ostream& out) {
      out.write(header(key, 0, 0, 0).data(), kHeaderBytes);  // the real counts are known at the end
      IdChecksum checksum;
      uint64_t tokens = 0;
      std::vector<uint32_t> buf;
      int64_t documents = 0;
      try {
        documents = tokenize_sources(sources, encoder, options, [&](const std::vector<int32_t>& ids) {
          buf.assign(ids.begin(), ids.end());  // ids were checked to be non-negative
          checksum.update(buf.data(), buf.size());
          out.write(reinterpret_cast<const char*>(buf.data()), static_cast<std::streamsize>(buf.size() * 4));
          if (!out) throw CacheWriteFailed("write failed (disk full?)");
          tokens += buf.size();
        });
      } catch (const CacheWriteFailed&) {
        throw;
      } catch (...) {
        source_failed = true;
        throw;
      }
      const std::string h = header(key, tokens, static_cast<uint64_t>(documents), checksum.value());
      out.seekp(0);
      out.write(h.data(), kHeaderBytes);
    });
  } catch (const std::exception& e) {
    if (source_failed) throw;
    spdlog::warn("cannot write the token cache {} ({}); continuing without it", file.string(), e.what());
    return false;
  }
  return true;
}

}  // namespace hedgelab::data::detail
