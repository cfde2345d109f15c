// UTF-8 and the few Unicode properties the byte-level BPE tokenizer needs: validation, decode/encode,
// letter/number/White_Space/word classes, canonical combining classes and NFC. Tables come from
// core/io/unicode_tables.* (see unicode_version()).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace hedgelab::io::unicode {

inline constexpr std::size_t kValid = static_cast<std::size_t>(-1);

// Offset of the first byte that does not start a well-formed UTF-8 sequence (overlongs, surrogates and
// code points above U+10FFFF are ill-formed), or kValid. With `allow_truncated_tail`, a sequence that is
// cut short by the end of `s` (a prefix of a valid one) is accepted: streaming reads may split a character.
std::size_t find_invalid_utf8(std::string_view s, bool allow_truncated_tail = false);

// Decodes the character at s[pos] of valid UTF-8 and advances pos past it.
char32_t next_code_point(std::string_view s, std::size_t& pos);
// Decodes the character ending just before s[pos] of valid UTF-8 and moves pos back to its first byte.
char32_t previous_code_point(std::string_view s, std::size_t& pos);
void append_utf8(std::string& out, char32_t cp);
inline bool is_continuation_byte(unsigned char b) {
  return (b & 0xC0) == 0x80;
}

// Rust's String::from_utf8_lossy: each maximal ill-formed subpart becomes U+FFFD.
std::string utf8_lossy(std::string_view bytes);

bool is_letter(char32_t cp);      // General Category L*
bool is_number(char32_t cp);      // General Category N*
bool is_whitespace(char32_t cp);  // White_Space
bool is_word_char(char32_t cp);   // Rust regex Unicode \w
std::uint8_t combining_class(char32_t cp);

// True when cp is a starter that NFC leaves alone and that never composes with what precedes it, so text
// can be normalized separately on both sides of it.
bool is_nfc_inert(char32_t cp);
// NFC of valid UTF-8.
std::string nfc(std::string_view s);

const char* unicode_version();

}  // namespace hedgelab::io::unicode
