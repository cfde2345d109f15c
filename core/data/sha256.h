// SHA-256, used for the tokenization cache key (a key must not collide between corpora or tokenizers).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace hedgelab::data {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, std::size_t size);
  void update(std::string_view text) { update(text.data(), text.size()); }
  std::array<uint8_t, 32> digest();  // finishes the hash; the object must not be updated afterwards

 private:
  void block(const uint8_t* p);
  std::array<uint32_t, 8> h_;
  std::array<uint8_t, 64> buf_{};
  std::size_t used_ = 0;
  uint64_t total_ = 0;
};

std::string to_hex(const uint8_t* bytes, std::size_t size);

}  // namespace hedgelab::data
