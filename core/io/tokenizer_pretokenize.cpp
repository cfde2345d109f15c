// The byte-level alphabet and the GPT-2 split regex, written out by hand so the semantics are exactly the
// regex engine's (leftmost-first alternation, greedy runs, the (?!\S) lookahead) without std::regex.
#include <array>

#include "core/io/tokenizer_internal.h"
#include "core/io/unicode.h"

namespace hedgelab::io::detail {

namespace {

struct ByteMap {
  std::array<std::string, 256> symbol;
  std::array<std::int16_t, 324> byte_of;  // symbols are below U+0144
  ByteMap() {
    byte_of.fill(-1);
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      const char32_t cp = printable ? static_cast<char32_t>(b) : next++;
      unicode::append_utf8(symbol[b], cp);
      byte_of[cp] = static_cast<std::int16_t>(b);
    }
  }
};

const ByteMap& byte_map() {
  static const ByteMap map;
  return map;
}

}  // namespace

const std::string& byte_symbol(unsigned char b) {
  return byte_map().symbol[b];
}

int symbol_byte(char32_t cp) {
  return cp < 324 ? byte_map().byte_of[cp] : -1;
}

void append_byte_symbols(std::string_view bytes, std::string& out) {
  const auto& map = byte_map();
  for (char c : bytes)
    out += map.symbol[static_cast<unsigned char>(c)];
}

CharClass char_class(char32_t cp) {
  if (cp < 0x80) {
    if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z')) return CharClass::kLetter;
    if (cp >= '0' && cp <= '9') return CharClass::kNumber;
    if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D)) return CharClass::kSpace;
    return CharClass::kOther;
  }
  if (unicode::is_letter(cp)) return CharClass::kLetter;
  if (unicode::is_number(cp)) return CharClass::kNumber;
  if (unicode::is_whitespace(cp)) return CharClass::kSpace;
  return CharClass::kOther;
}

void gpt2_split(std::string_view s, std::vector<std::pair<std::size_t, std::size_t>>& pieces) {
  const std::size_t n = s.size();
  std::size_t i = 0;
  auto class_at = [&](std::size_t pos, std::size_t& next) {
    next = pos;
    return char_class(unicode::next_code_point(s, next));
  };
  while (i < n) {
    // 's|'t|'re|'ve|'m|'ll|'d: case-sensitive ASCII, tried before anything else.
    if (s[i] == '\'' && i + 1 < n) {
      const char c1 = s[i + 1];
      if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') {
        pieces.emplace_back(i, i + 2);
        i += 2;
        continue;
      }
      if (i + 2 < n) {
        const char c2 = s[i + 2];
        if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) {
          pieces.emplace_back(i, i + 3);
          i += 3;
          continue;
        }
      }
    }
    // ` ?X+` for X in letters, numbers, other: the optional prefix is U+0020 only.
    const std::size_t j = s[i] == ' ' ? i + 1 : i;
    if (j < n) {
      std::size_t next = 0;
      const CharClass cls = class_at(j, next);
      if (cls != CharClass::kSpace) {
        std::size_t end = next, probe = 0;
        while (end < n && class_at(end, probe) == cls)
          end = probe;
        pieces.emplace_back(i, end);
        i = end;
        continue;
      }
    }
    // A whitespace run. \s+(?!\S) takes it whole at the end of the text, or all but its last character when
    // a non-space follows (that character then starts the next piece); a lone one falls to \s+.
    std::size_t end = i, last = i, probe = 0;
    while (end < n && class_at(end, probe) == CharClass::kSpace) {
      last = end;
      end = probe;
    }
    if (end == n || last == i) {
      pieces.emplace_back(i, end);
      i = end;
    } else {
      pieces.emplace_back(i, last);
      i = last;
    }
  }
}

}  // namespace hedgelab::io::detail
