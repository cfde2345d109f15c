#include "core/io/unicode.h"

#include <algorithm>
#include <array>
#include <memory>
#include <tuple>
#include <vector>

#include "core/io/unicode_tables.h"

namespace hedgelab::io::unicode {

namespace tables = unicode_tables;

namespace {

constexpr char32_t kReplacement = 0xFFFD;

// Hangul syllable arithmetic (Unicode ch. 3.12).
constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr char32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount,
                   kSCount = kLCount * kNCount;

bool in_ranges(const tables::Range* ranges, std::size_t size, char32_t cp) {
  const tables::Range* end = ranges + size;
  const tables::Range* it =
      std::upper_bound(ranges, end, cp, [](char32_t c, const tables::Range& r) { return c < r.first; });
  return it != ranges && cp <= (it - 1)->last;
}

std::uint8_t ccc_lookup(char32_t cp) {
  const auto* begin = tables::kCombiningClasses;
  const auto* end = begin + tables::kCombiningClassesSize;
  const auto* it = std::upper_bound(begin, end, cp,
                                    [](char32_t c, const tables::CombiningRange& r) { return c < r.first; });
  return (it != begin && cp <= (it - 1)->last) ? (it - 1)->ccc : 0;
}

const tables::Decomposition* find_decomposition(char32_t cp) {
  const auto* begin = tables::kDecompositions;
  const auto* end = begin + tables::kDecompositionsSize;
  const auto* it =
      std::lower_bound(begin, end, cp, [](const tables::Decomposition& d, char32_t c) { return d.cp < c; });
  return (it != end && it->cp == cp) ? it : nullptr;
}

bool is_composition_second(char32_t cp) {
  if (cp >= kVBase && cp < kVBase + kVCount) return true;
  if (cp > kTBase && cp < kTBase + kTCount) return true;
  return std::binary_search(tables::kCompositionSeconds,
                            tables::kCompositionSeconds + tables::kCompositionSecondsSize, cp);
}

bool inert_lookup(char32_t cp) {
  if (cp >= kSBase && cp < kSBase + kSCount) return true;  // composes only forward, with a T jamo
  return ccc_lookup(cp) == 0 && find_decomposition(cp) == nullptr && !is_composition_second(cp);
}

enum Flag : std::uint8_t { kLetter = 1, kNumber = 2, kSpace = 4, kWord = 8, kInert = 16 };

// Flags of the whole BMP, computed once: the tokenizer asks these for nearly every character.
const std::array<std::uint8_t, 0x10000>& bmp_flags() {
  static const auto table = [] {
    auto t = std::make_unique<std::array<std::uint8_t, 0x10000>>();
    for (char32_t cp = 0; cp < 0x10000; ++cp) {
      std::uint8_t f = 0;
      if (in_ranges(tables::kLetters, tables::kLettersSize, cp)) f |= kLetter;
      if (in_ranges(tables::kNumbers, tables::kNumbersSize, cp)) f |= kNumber;
      if (in_ranges(tables::kWhiteSpace, tables::kWhiteSpaceSize, cp)) f |= kSpace;
      if (in_ranges(tables::kWordChars, tables::kWordCharsSize, cp)) f |= kWord;
      if (inert_lookup(cp)) f |= kInert;
      (*t)[cp] = f;
    }
    return t;
  }();
  return *table;
}

// Length of the longest prefix of s[pos..] that can begin a well-formed sequence, and the full length that
// sequence needs (0 when s[pos] can start none). Follows Unicode Table 3-7.
void sequence_prefix(std::string_view s, std::size_t pos, std::size_t& prefix, std::size_t& needed) {
  const auto b0 = static_cast<unsigned char>(s[pos]);
  unsigned char lo = 0x80, hi = 0xBF;
  if (b0 < 0x80) {
    prefix = needed = 1;
    return;
  } else if (b0 >= 0xC2 && b0 <= 0xDF) {
    needed = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    needed = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    needed = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    prefix = needed = 0;
    return;
  }
  prefix = 1;
  while (prefix < needed && pos + prefix < s.size()) {
    const auto b = static_cast<unsigned char>(s[pos + prefix]);
    if (prefix == 1 ? (b < lo || b > hi) : !is_continuation_byte(b)) break;
    ++prefix;
  }
}

void decompose_into(char32_t cp, std::vector<char32_t>& out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    const char32_t index = cp - kSBase;
    out.push_back(kLBase + index / kNCount);
    out.push_back(kVBase + (index % kNCount) / kTCount);
    if (index % kTCount != 0) out.push_back(kTBase + index % kTCount);
    return;
  }
  if (const auto* d = find_decomposition(cp)) {
    out.insert(out.end(), tables::kDecompositionPool + d->offset,
               tables::kDecompositionPool + d->offset + d->length);
  } else {
    out.push_back(cp);
  }
}

char32_t compose_pair(char32_t a, char32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount) {
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  }
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase &&
      b < kTBase + kTCount) {
    return a + (b - kTBase);
  }
  const auto* begin = tables::kCompositions;
  const auto* end = begin + tables::kCompositionsSize;
  const auto* it =
      std::lower_bound(begin, end, std::make_pair(a, b), [](const tables::Composition& c, auto key) {
        return c.first < key.first || (c.first == key.first && c.second < key.second);
      });
  return (it != end && it->first == a && it->second == b) ? it->composite : 0;
}

// Full NFC (decompose, canonical order, compose) of a short span that starts at a boundary.
void normalize_span(std::string_view s, std::string& out) {
  std::vector<char32_t> cps;
  for (std::size_t pos = 0; pos < s.size();)
    decompose_into(next_code_point(s, pos), cps);
  std::vector<std::uint8_t> classes(cps.size());
  for (std::size_t i = 0; i < cps.size(); ++i)
    classes[i] = combining_class(cps[i]);
  // Canonical ordering: stable sort of each run of non-starters by combining class.
  for (std::size_t i = 0; i < cps.size();) {
    if (classes[i] == 0) {
      ++i;
      continue;
    }
    std::size_t j = i;
    while (j < cps.size() && classes[j] != 0)
      ++j;
    if (j - i > 1) {
      std::vector<std::pair<std::uint8_t, char32_t>> run;
      for (std::size_t k = i; k < j; ++k)
        run.emplace_back(classes[k], cps[k]);
      std::stable_sort(run.begin(), run.end(),
                       [](const auto& x, const auto& y) { return x.first < y.first; });
      for (std::size_t k = i; k < j; ++k)
        std::tie(classes[k], cps[k]) = run[k - i];
    }
    i = j;
  }
  // Canonical composition: a character joins the last starter unless something between blocks it.
  std::vector<char32_t> composed;
  composed.reserve(cps.size());
  std::ptrdiff_t starter = -1;
  int last_class = -1;
  for (std::size_t i = 0; i < cps.size(); ++i) {
    const char32_t c = cps[i];
    const int cc = classes[i];
    if (starter >= 0) {
      const bool adjacent = static_cast<std::ptrdiff_t>(composed.size()) - 1 == starter;
      if (adjacent || (last_class != 0 && last_class < cc)) {
        if (const char32_t comp = compose_pair(composed[starter], c)) {
          composed[starter] = comp;
          continue;
        }
      }
    }
    if (cc == 0) starter = static_cast<std::ptrdiff_t>(composed.size());
    composed.push_back(c);
    last_class = cc;
  }
  for (char32_t c : composed)
    append_utf8(out, c);
}

}  // namespace

std::size_t find_invalid_utf8(std::string_view s, bool allow_truncated_tail) {
  std::size_t pos = 0;
  while (pos < s.size()) {
    if (static_cast<unsigned char>(s[pos]) < 0x80) {
      ++pos;
      continue;
    }
    std::size_t prefix = 0, needed = 0;
    sequence_prefix(s, pos, prefix, needed);
    if (needed != 0 && prefix == needed) {
      pos += needed;
    } else if (allow_truncated_tail && needed != 0 && pos + prefix == s.size()) {
      return kValid;
    } else {
      return pos;
    }
  }
  return kValid;
}

char32_t next_code_point(std::string_view s, std::size_t& pos) {
  const auto b0 = static_cast<unsigned char>(s[pos]);
  if (b0 < 0x80) {
    ++pos;
    return b0;
  }
  int len = b0 >= 0xF0 ? 4 : b0 >= 0xE0 ? 3 : 2;
  char32_t cp = b0 & (0x7F >> len);
  for (int i = 1; i < len; ++i)
    cp = (cp << 6) | (static_cast<unsigned char>(s[pos + i]) & 0x3F);
  pos += len;
  return cp;
}

char32_t previous_code_point(std::string_view s, std::size_t& pos) {
  std::size_t start = pos - 1;
  while (start > 0 && is_continuation_byte(static_cast<unsigned char>(s[start])))
    --start;
  std::size_t p = start;
  const char32_t cp = next_code_point(s, p);
  pos = start;
  return cp;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string utf8_lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  std::size_t pos = 0;
  while (pos < bytes.size()) {
    std::size_t prefix = 0, needed = 0;
    sequence_prefix(bytes, pos, prefix, needed);
    if (needed != 0 && prefix == needed) {
      out.append(bytes, pos, needed);
      pos += needed;
    } else {
      append_utf8(out, kReplacement);
      pos += std::max<std::size_t>(prefix, 1);
    }
  }
  return out;
}

bool is_letter(char32_t cp) {
  if (cp < 0x10000) return bmp_flags()[cp] & kLetter;
  return in_ranges(tables::kLetters, tables::kLettersSize, cp);
}

bool is_number(char32_t cp) {
  if (cp < 0x10000) return bmp_flags()[cp] & kNumber;
  return in_ranges(tables::kNumbers, tables::kNumbersSize, cp);
}

bool is_whitespace(char32_t cp) {
  if (cp < 0x10000) return bmp_flags()[cp] & kSpace;
  return false;  // White_Space has no code point outside the BMP
}

bool is_word_char(char32_t cp) {
  if (cp < 0x10000) return bmp_flags()[cp] & kWord;
  return in_ranges(tables::kWordChars, tables::kWordCharsSize, cp);
}

std::uint8_t combining_class(char32_t cp) {
  return cp < 0x300 ? 0 : ccc_lookup(cp);
}

bool is_nfc_inert(char32_t cp) {
  if (cp < 0x80) return true;
  if (cp < 0x10000) return bmp_flags()[cp] & kInert;
  return inert_lookup(cp);
}

std::string nfc(std::string_view s) {
  // Runs of inert characters are already NFC; only the spans from the last inert character before a
  // non-inert one up to the next inert one need the full algorithm.
  std::string out;
  out.reserve(s.size());
  std::size_t done = 0, last_inert = 0, complex_begin = 0;
  bool in_complex = false;
  for (std::size_t pos = 0; pos < s.size();) {
    const std::size_t begin = pos;
    const char32_t cp = next_code_point(s, pos);
    if (is_nfc_inert(cp)) {
      if (in_complex) {
        normalize_span(s.substr(complex_begin, begin - complex_begin), out);
        done = begin;
        in_complex = false;
      }
      last_inert = begin;
    } else if (!in_complex) {
      complex_begin = std::max(last_inert, done);
      out.append(s, done, complex_begin - done);
      done = complex_begin;
      in_complex = true;
    }
  }
  if (in_complex) {
    normalize_span(s.substr(complex_begin), out);
  } else {
    out.append(s, done, std::string_view::npos);
  }
  return out;
}

const char* unicode_version() {
  return tables::kUnicodeVersion;
}

}  // namespace hedgelab::io::unicode
