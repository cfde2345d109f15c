// UTF-8 validation for corpus text: the tokenizer may accept anything, so the corpus reader checks first.
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>

namespace hedgelab::data {

// Offset of the first byte of the first ill-formed sequence (overlong form, surrogate, code point above
// U+10FFFF, stray continuation byte, or a sequence cut short by the end of `text`); nullopt when valid.
std::optional<std::size_t> find_invalid_utf8(std::string_view text);

}  // namespace hedgelab::data
