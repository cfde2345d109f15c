// Reading text sources in bounded memory: plain files in pieces cut at line boundaries, JSONL line by line.
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "core/common/error.h"
#include "core/data/token_storage.h"
#include "core/data/utf8.h"

namespace hedgelab::data::detail {

namespace {

constexpr std::string_view kUtf8Bom = "\xEF\xBB\xBF";

bool is_space(char c) {
  return c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '\f' || c == '\v';
}

std::string utf8_error(uint64_t byte) {
  return "is not valid UTF-8 (byte " + std::to_string(byte) + "); convert it with iconv -t UTF-8";
}

// Where to end a piece of `buf` so that the tokenizer would have cut there anyway: after a newline that is
// followed by a non-space (byte-level pre-tokenizers split whitespace runs, so a cut inside one could change
// the tokens), else after any newline, else before a space that follows a word, else at a character boundary.
// Only the back half is searched, so the carried remainder stays below half the buffer (memory stays
// bounded).
std::size_t piece_cut(const std::string& buf) {
  const std::size_t n = buf.size(), half = std::max<std::size_t>(n / 2, 1);
  for (std::size_t p = n - 1; p >= half; --p) {
    if (buf[p - 1] == '\n' && !is_space(buf[p])) return p;
  }
  for (std::size_t p = n; p >= half; --p) {
    if (buf[p - 1] == '\n') return p;
  }
  for (std::size_t p = n - 1; p >= half; --p) {
    if (buf[p] == ' ' && !is_space(buf[p - 1])) return p;
  }
  std::size_t p = n - 1;
  while (p > half && (static_cast<unsigned char>(buf[p]) & 0xC0) == 0x80)
    --p;
  return p;
}

class DocumentEncoder {
 public:
  DocumentEncoder(const TextEncoder& encoder, const IdSink& sink) : encoder_(encoder), sink_(sink) {}

  // Encodes one piece of the current document and passes its ids on.
  void piece(const std::filesystem::path& file, std::string_view text) {
    if (text.empty()) return;
    std::vector<int32_t> ids = encoder_.encode(text);
    check(file, ids);
    if (!ids.empty()) {
      open_ = true;
      sink_(ids);
    }
  }
  // Ends the current document: EOS after it, unless it produced no ids at all (an empty document is skipped).
  void end_document() {
    if (!open_) return;
    if (encoder_.eos) sink_(std::vector<int32_t>{*encoder_.eos});
    open_ = false;
    ++documents_;
  }
  int64_t documents() const { return documents_; }

 private:
  void check(const std::filesystem::path& file, const std::vector<int32_t>& ids) const {
    for (const int32_t id : ids) {
      if (id < 0 || (encoder_.vocab_size && static_cast<std::size_t>(id) >= encoder_.vocab_size)) {
        throw Error(file.string(), "the tokenizer produced id " + std::to_string(id) + ", outside [0, " +
                                       std::to_string(encoder_.vocab_size) + ")");
      }
    }
  }
  const TextEncoder& encoder_;
  const IdSink& sink_;
  bool open_ = false;
  int64_t documents_ = 0;
};

std::ifstream open_input(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path.string(), std::string("cannot open: ") + std::strerror(errno));
  return in;
}

void read_text_file(const std::filesystem::path& path, std::size_t piece_bytes, DocumentEncoder& doc) {
  std::ifstream in = open_input(path);
  std::string buf;
  uint64_t buf_offset = 0;  // file offset of buf[0], for error messages
  bool first = true;
  for (;;) {
    const std::size_t old = buf.size();
    buf.resize(old + piece_bytes);
    in.read(buf.data() + old, static_cast<std::streamsize>(piece_bytes));
    buf.resize(old + static_cast<std::size_t>(in.gcount()));
    if (in.bad()) throw Error(path.string(), std::string("read failed: ") + std::strerror(errno));
    const bool eof = in.eof();
    if (first && std::string_view(buf).substr(0, 3) == kUtf8Bom) {  // editors' byte-order mark is not text
      buf.erase(0, 3);
      buf_offset = 3;
    }
    first = false;
    const std::size_t cut = eof || buf.empty() ? buf.size() : piece_cut(buf);
    const std::string_view piece(buf.data(), cut);
    if (const auto bad = find_invalid_utf8(piece)) throw Error(path.string(), utf8_error(buf_offset + *bad));
    doc.piece(path, piece);
    buf.erase(0, cut);
    buf_offset += cut;
    if (eof) break;
  }
  doc.end_document();
}

void read_jsonl_file(const std::filesystem::path& path, const std::string& field, DocumentEncoder& doc) {
  std::ifstream in = open_input(path);
  std::string line;
  uint64_t line_offset = 0;
  int64_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    const uint64_t offset = line_offset;
    line_offset += line.size() + 1;
    std::string_view text = line;
    if (line_no == 1 && text.substr(0, 3) == kUtf8Bom) text.remove_prefix(3);
    if (text.find_first_not_of(" \t\r\n\f\v") == std::string_view::npos) continue;
    const std::string where = path.string() + ": line " + std::to_string(line_no);
    if (const auto bad = find_invalid_utf8(text)) {
      throw Error(where, utf8_error(offset + (text.data() - line.data()) + *bad));
    }
    const std::string expected = "expected a JSON object with a string field \"" + field + "\"";
    nlohmann::json value;
    try {
      value = nlohmann::json::parse(text);
    } catch (const nlohmann::json::parse_error& e) {
      throw Error(where, expected + " (invalid JSON at column " + std::to_string(e.byte) + ")");
    }
    if (!value.is_object()) throw Error(where, expected + ", found " + value.type_name());
    const auto it = value.find(field);
    if (it == value.end()) throw Error(where, expected + ", found no \"" + field + "\"");
    if (!it->is_string())
      throw Error(where, expected + ", found \"" + field + "\" of type " + it->type_name());
    doc.piece(path, it->get_ref<const std::string&>());
    doc.end_document();
  }
  if (in.bad()) throw Error(path.string(), std::string("read failed: ") + std::strerror(errno));
}

}  // namespace

int64_t tokenize_sources(const std::vector<TextSource>& sources, const TextEncoder& encoder,
                         const CorpusOptions& options, const IdSink& sink) {
  if (!encoder.encode) {
    throw Error(sources.empty() ? std::string("corpus") : sources.front().path.string(),
                "reading text needs a tokenizer (the encoder has no encode function)");
  }
  if (encoder.eos && (*encoder.eos < 0 ||
                      (encoder.vocab_size && static_cast<std::size_t>(*encoder.eos) >= encoder.vocab_size))) {
    throw Error("tokenizer", "EOS id " + std::to_string(*encoder.eos) + " is outside [0, " +
                                 std::to_string(encoder.vocab_size) + ")");
  }
  // Small pieces would be slow, and piece_cut needs room to find a line boundary.
  const std::size_t piece_bytes = std::max<std::size_t>(options.text_piece_bytes, 64);
  DocumentEncoder doc(encoder, sink);
  for (const TextSource& s : sources) {
    if (s.jsonl) {
      read_jsonl_file(s.path, options.text_field, doc);
    } else {
      read_text_file(s.path, piece_bytes, doc);
    }
  }
  return doc.documents();
}

}  // namespace hedgelab::data::detail
