// Reading and writing tokenizer.json. Everything the file asks for is either honoured exactly or refused with
// a one-line hedgelab::Error naming the file and the field. `truncation` and `padding` are batch settings of
// the Python API and are ignored: HedgeLab encodes whole texts and streams.
#include <algorithm>
#include <fstream>
#include <sstream>

#include "core/common/error.h"
#include "core/io/tokenizer_internal.h"
#include "core/io/unicode.h"

namespace hedgelab::io {

using detail::Json;
using detail::PreTokenizerStep;

namespace {

constexpr std::int64_t kMaxId = std::int64_t{1} << 26;  // bounds the id -> token table

std::string json_quoted(const std::string& s) {
  return Json(s).dump(-1, ' ', false, Json::error_handler_t::replace);
}

std::string kind_of(const Json& j) {
  switch (j.type()) {
    case Json::value_t::null:
      return "null";
    case Json::value_t::object:
      return "an object";
    case Json::value_t::array:
      return "an array";
    case Json::value_t::string:
      return "the string " + json_quoted(j.get<std::string>());
    case Json::value_t::boolean:
      return j.get<bool>() ? "true" : "false";
    default:
      return j.is_number() ? "the number " + j.dump() : "a value of another kind";
  }
}

// Reads one tokenizer.json; every failure names `source` and the field path.
class Reader {
 public:
  explicit Reader(std::string source) : source_(std::move(source)) {}

  [[noreturn]] void fail(const std::string& field, const std::string& what) const {
    throw Error(source_ + ": " + field, what);
  }

  const Json* find(const Json& object, const char* key) const {
    const auto it = object.find(key);
    return it == object.end() ? nullptr : &*it;
  }

  const Json& require_object(const Json& j, const std::string& field, const std::string& expected) const {
    if (!j.is_object()) fail(field, "expected " + expected + ", got " + kind_of(j));
    return j;
  }

  bool optional_bool(const Json& object, const char* key, const std::string& field, bool fallback) const {
    const Json* v = find(object, key);
    if (v == nullptr || v->is_null()) return fallback;
    if (!v->is_boolean()) fail(field + "." + key, "expected true or false, got " + kind_of(*v));
    return v->get<bool>();
  }

  bool required_bool(const Json& object, const char* key, const std::string& field) const {
    const Json* v = find(object, key);
    if (v == nullptr) fail(field + "." + key, "missing (expected true or false)");
    return optional_bool(object, key, field, false);
  }

  std::optional<std::string> optional_string(const Json& object, const char* key,
                                             const std::string& field) const {
    const Json* v = find(object, key);
    if (v == nullptr || v->is_null()) return std::nullopt;
    if (!v->is_string()) fail(field + "." + key, "expected a string or null, got " + kind_of(*v));
    return v->get<std::string>();
  }

  std::string type_of(const Json& object, const std::string& field) const {
    const Json* t = find(object, "type");
    if (t == nullptr) fail(field + ".type", "missing");
    if (!t->is_string()) fail(field + ".type", "expected a string, got " + kind_of(*t));
    return t->get<std::string>();
  }

  TokenId id_value(const Json& j, const std::string& field) const {
    if (!j.is_number_integer() || j.get<std::int64_t>() < 0 || j.get<std::int64_t>() >= kMaxId) {
      fail(field,
           "expected a token id (an integer in [0, " + std::to_string(kMaxId) + ")), got " + kind_of(j));
    }
    return static_cast<TokenId>(j.get<std::int64_t>());
  }

  // Returns whether the normalizer amounts to NFC.
  bool normalizer(const Json& j, const std::string& field) const {
    if (j.is_null()) return false;
    require_object(j, field, "an object or null");
    const std::string type = type_of(j, field);
    if (type == "NFC") return true;
    if (type == "Sequence") {
      const Json* items = find(j, "normalizers");
      if (items == nullptr || !items->is_array())
        fail(field + ".normalizers", "expected an array of normalizers");
      bool nfc = false;
      for (std::size_t i = 0; i < items->size(); ++i) {
        nfc = normalizer((*items)[i], field + ".normalizers[" + std::to_string(i) + "]") || nfc;
      }
      return nfc;
    }
    fail(field + ".type",
         json_quoted(type) + " is not supported (HedgeLab supports NFC, a Sequence of NFC, or null)");
  }

  void pre_tokenizer(const Json& j, const std::string& field, std::vector<PreTokenizerStep>& steps) const {
    const std::string expected = "ByteLevel, or a Sequence of the GPT-2 Split and ByteLevel";
    if (j.is_null())
      fail(field, "null is not supported (HedgeLab reads byte-level BPE: expected " + expected + ")");
    require_object(j, field, "an object");
    const std::string type = type_of(j, field);
    if (type == "ByteLevel") {
      PreTokenizerStep step{PreTokenizerStep::kByteLevel};
      step.add_prefix_space = required_bool(j, "add_prefix_space", field);
      step.use_regex = optional_bool(j, "use_regex", field, true);
      optional_bool(j, "trim_offsets", field, true);  // offsets only; checked for type
      steps.push_back(step);
    } else if (type == "Split") {
      const Json* pattern = find(j, "pattern");
      if (pattern == nullptr || !pattern->is_object() || !pattern->contains("Regex") ||
          !(*pattern)["Regex"].is_string()) {
        fail(field + ".pattern", std::string("expected {\"Regex\": <the GPT-2 pattern>}"));
      }
      if ((*pattern)["Regex"].get<std::string>() != detail::kGpt2Pattern) {
        fail(field + ".pattern.Regex", json_quoted((*pattern)["Regex"].get<std::string>()) +
                                           " is not supported (HedgeLab splits with the GPT-2 pattern only)");
      }
      const Json* behavior = find(j, "behavior");
      if (behavior == nullptr || *behavior != "Isolated") {
        fail(field + ".behavior",
             "expected \"Isolated\", got " + (behavior ? kind_of(*behavior) : "nothing"));
      }
      if (optional_bool(j, "invert", field, false))
        fail(field + ".invert", "true is not supported (expected false)");
      steps.push_back(PreTokenizerStep{PreTokenizerStep::kSplit});
    } else if (type == "Sequence") {
      const Json* items = find(j, "pretokenizers");
      if (items == nullptr || !items->is_array())
        fail(field + ".pretokenizers", "expected an array of pre-tokenizers");
      for (std::size_t i = 0; i < items->size(); ++i) {
        pre_tokenizer((*items)[i], field + ".pretokenizers[" + std::to_string(i) + "]", steps);
      }
    } else {
      fail(
          field + ".type",
          json_quoted(type) + " is not supported (HedgeLab reads byte-level BPE: expected " + expected + ")");
    }
  }

  // Appends (prefix, suffix) id lists of TemplateProcessing post-processors, innermost first.
  void post_processor(const Json& j, const std::string& field,
                      std::vector<std::pair<std::vector<TokenId>, std::vector<TokenId>>>& templates) const {
    if (j.is_null()) return;
    require_object(j, field, "an object or null");
    const std::string type = type_of(j, field);
    if (type == "ByteLevel") return;  // only trims offsets
    if (type == "Sequence") {
      const Json* items = find(j, "processors");
      if (items == nullptr || !items->is_array())
        fail(field + ".processors", "expected an array of post-processors");
      for (std::size_t i = 0; i < items->size(); ++i) {
        post_processor((*items)[i], field + ".processors[" + std::to_string(i) + "]", templates);
      }
      return;
    }
    if (type != "TemplateProcessing") {
      fail(field + ".type",
           json_quoted(type) + " is not supported (HedgeLab supports null, ByteLevel, TemplateProcessing)");
    }
    const Json* specials = find(j, "special_tokens");
    if (specials == nullptr || !specials->is_object()) fail(field + ".special_tokens", "expected an object");
    const Json* single = find(j, "single");
    if (single == nullptr || !single->is_array())
      fail(field + ".single", "expected an array of template pieces");
    std::pair<std::vector<TokenId>, std::vector<TokenId>> t;
    bool seen_sequence = false;
    for (std::size_t i = 0; i < single->size(); ++i) {
      const std::string at = field + ".single[" + std::to_string(i) + "]";
      const Json& piece = (*single)[i];
      if (piece.is_object() && piece.contains("Sequence")) {
        const Json& seq = piece["Sequence"];
        if (!seq.is_object() || seq.value("id", Json()) != "A") fail(at + ".Sequence.id", "expected \"A\"");
        if (seen_sequence) fail(at, "a second sequence in the single template");
        seen_sequence = true;
      } else if (piece.is_object() && piece.contains("SpecialToken")) {
        const Json& sp = piece["SpecialToken"];
        if (!sp.is_object() || !sp.contains("id") || !sp["id"].is_string()) {
          fail(at + ".SpecialToken.id", "expected a string");
        }
        const std::string name = sp["id"].get<std::string>();
        const Json* entry = find(*specials, name.c_str());
        if (entry == nullptr || !entry->is_object() || !entry->contains("ids") ||
            !(*entry)["ids"].is_array()) {
          fail(field + ".special_tokens", "no entry with \"ids\" for " + json_quoted(name));
        }
        const Json& ids = (*entry)["ids"];
        for (std::size_t k = 0; k < ids.size(); ++k) {
          (seen_sequence ? t.second : t.first)
              .push_back(
                  id_value(ids[k], field + ".special_tokens." + name + ".ids[" + std::to_string(k) + "]"));
        }
      } else {
        fail(at, "expected {\"Sequence\": ...} or {\"SpecialToken\": ...}, got " + kind_of(piece));
      }
    }
    if (!seen_sequence) fail(field + ".single", "the template has no sequence \"A\"");
    templates.push_back(std::move(t));
  }

  // Returns whether the decoder is ByteLevel (false: null, tokens joined by spaces).
  bool decoder(const Json& j, const std::string& field) const {
    if (j.is_null()) return false;
    require_object(j, field, "an object or null");
    const std::string type = type_of(j, field);
    if (type != "ByteLevel")
      fail(field + ".type", json_quoted(type) + " is not supported (HedgeLab decodes ByteLevel or null)");
    return true;
  }

  void model(const Json& j, detail::BpeModel& bpe) const {
    const std::string field = "model";
    require_object(j, field, "the BPE model object");
    if (const Json* t = find(j, "type")) {  // older files (GPT-2's) leave the type out
      if (!t->is_string()) fail("model.type", "expected a string, got " + kind_of(*t));
      if (*t != "BPE") {
        fail("model.type",
             json_quoted(t->get<std::string>()) + " is not supported (HedgeLab reads byte-level BPE)");
      }
    }
    if (const Json* dropout = find(j, "dropout"); dropout && !dropout->is_null()) {
      if (!dropout->is_number()) fail("model.dropout", "expected null or a number, got " + kind_of(*dropout));
      if (dropout->get<double>() != 0.0) {
        fail("model.dropout",
             dropout->dump() + " is not supported (expected null: HedgeLab encodes deterministically)");
      }
    }
    bpe.unk_token = optional_string(j, "unk_token", field);
    bpe.continuing_subword_prefix = optional_string(j, "continuing_subword_prefix", field);
    bpe.end_of_word_suffix = optional_string(j, "end_of_word_suffix", field);
    if (bpe.continuing_subword_prefix && bpe.continuing_subword_prefix->empty())
      bpe.continuing_subword_prefix.reset();
    if (bpe.end_of_word_suffix && bpe.end_of_word_suffix->empty()) bpe.end_of_word_suffix.reset();
    bpe.fuse_unk = optional_bool(j, "fuse_unk", field, false);
    bpe.byte_fallback = optional_bool(j, "byte_fallback", field, false);
    bpe.ignore_merges = optional_bool(j, "ignore_merges", field, false);

    const Json* vocab = find(j, "vocab");
    if (vocab == nullptr) fail("model.vocab", "missing (expected an object mapping tokens to ids)");
    if (!vocab->is_object())
      fail("model.vocab", "expected an object mapping tokens to ids, got " + kind_of(*vocab));
    bpe.vocab.reserve(vocab->size());
    TokenId max_id = -1;
    for (const auto& [token, value] : vocab->items()) {
      const TokenId id = id_value(value, "model.vocab[" + json_quoted(token) + "]");
      bpe.vocab.emplace(token, id);
      max_id = std::max(max_id, id);
    }
    bpe.id_to_token.assign(static_cast<std::size_t>(max_id + 1), std::string());
    for (const auto& [token, id] : bpe.vocab) {
      std::string& slot = bpe.id_to_token[id];
      if (slot.empty() || token < slot) slot = token;  // duplicate ids: a deterministic pick
    }

    const Json* merges = find(j, "merges");
    if (merges == nullptr) fail("model.merges", "missing (expected an array of merges)");
    if (!merges->is_array()) fail("model.merges", "expected an array of merges, got " + kind_of(*merges));
    bpe.merges.reserve(merges->size());
    for (std::size_t i = 0; i < merges->size(); ++i) {
      const Json& m = (*merges)[i];
      const std::string at = "model.merges[" + std::to_string(i) + "]";
      if (m.is_string()) {
        const std::string s = m.get<std::string>();
        const std::size_t space = s.find(' ');
        if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
          fail(at, "expected \"left right\" with exactly one space, got " + json_quoted(s));
        }
        bpe.merges.emplace_back(s.substr(0, space), s.substr(space + 1));
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        bpe.merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
      } else {
        fail(at, "expected \"left right\" or [\"left\", \"right\"], got " + kind_of(m));
      }
    }
    bpe.build(source_ + ": model");
  }

  void added_tokens(const Json& j, const detail::BpeModel& model,
                    std::vector<detail::AddedToken>& added) const {
    if (j.is_null()) return;
    if (!j.is_array()) fail("added_tokens", "expected an array, got " + kind_of(j));
    std::unordered_map<TokenId, std::size_t> ids;
    for (std::size_t i = 0; i < j.size(); ++i) {
      const std::string at = "added_tokens[" + std::to_string(i) + "]";
      const Json& t = require_object(j[i], at, "an object");
      detail::AddedToken token;
      const Json* content = find(t, "content");
      if (content == nullptr || !content->is_string() || content->get<std::string>().empty()) {
        fail(at + ".content", "expected a non-empty string");
      }
      token.content = content->get<std::string>();
      const Json* id = find(t, "id");
      if (id == nullptr) fail(at + ".id", "missing");
      token.id = id_value(*id, at + ".id");
      token.special = optional_bool(t, "special", at, false);
      token.single_word = optional_bool(t, "single_word", at, false);
      token.lstrip = optional_bool(t, "lstrip", at, false);
      token.rstrip = optional_bool(t, "rstrip", at, false);
      token.normalized = optional_bool(t, "normalized", at, !token.special);
      // The library keeps the vocab's id for a token the model already has.
      if (const auto it = model.vocab.find(token.content); it != model.vocab.end()) {
        token.id = it->second;
      } else if (static_cast<std::size_t>(token.id) < model.id_to_token.size() &&
                 !model.id_to_token[token.id].empty()) {
        fail(at + ".id", std::to_string(token.id) + " already belongs to model.vocab's " +
                             json_quoted(model.id_to_token[token.id]) +
                             " (the tokenizers library would renumber " + json_quoted(token.content) + ")");
      }
      for (const auto& other : added) {
        if (other.content == token.content)
          fail(at + ".content", json_quoted(token.content) + " is added twice");
      }
      if (ids.count(token.id)) fail(at + ".id", std::to_string(token.id) + " is used by two added tokens");
      ids[token.id] = i;
      added.push_back(std::move(token));
    }
  }

 private:
  std::string source_;
};

Json added_token_json(const detail::AddedToken& t) {
  Json j;
  j["id"] = t.id;
  j["content"] = t.content;
  j["single_word"] = t.single_word;
  j["lstrip"] = t.lstrip;
  j["rstrip"] = t.rstrip;
  j["normalized"] = t.normalized;
  j["special"] = t.special;
  return j;
}

Json byte_level_json(bool add_prefix_space) {
  Json j;
  j["type"] = "ByteLevel";
  j["add_prefix_space"] = add_prefix_space;
  j["trim_offsets"] = true;
  j["use_regex"] = true;
  return j;
}

}  // namespace

Tokenizer Tokenizer::from_file(const std::filesystem::path& tokenizer_json) {
  const std::string name = tokenizer_json.string();
  std::error_code ec;
  if (!std::filesystem::exists(tokenizer_json, ec))
    throw Error(name, "no such file (expected a tokenizer.json)");
  if (std::filesystem::is_directory(tokenizer_json, ec)) {
    throw Error(name, "is a directory (expected a tokenizer.json file)");
  }
  std::ifstream in(tokenizer_json, std::ios::binary);
  if (!in) throw Error(name, "cannot open file for reading");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw Error(name, "read error");
  return from_json_text(text.str(), name);
}

Tokenizer Tokenizer::from_json_text(const std::string& json_text, const std::string& source_name) {
  Json root;
  try {
    root = Json::parse(json_text);
  } catch (const Json::parse_error& e) {
    std::string what = e.what();
    if (const auto pos = what.find("] "); pos != std::string::npos) what = what.substr(pos + 2);
    std::replace(what.begin(), what.end(), '\n', ' ');
    throw Error(source_name, "not valid JSON (" + what + ")");
  }
  const Reader reader(source_name);
  if (!root.is_object()) reader.fail("(top level)", "expected a tokenizer.json object, got " + kind_of(root));
  auto impl = std::make_unique<Impl>();
  impl->source = source_name;
  const Json null_json;
  auto field = [&](const char* key) -> const Json& {
    const Json* v = reader.find(root, key);
    return v ? *v : null_json;
  };
  const Json* model = reader.find(root, "model");
  if (model == nullptr) reader.fail("model", "missing (expected the BPE model object)");
  reader.model(*model, impl->model);
  impl->nfc = reader.normalizer(field("normalizer"), "normalizer");
  const Json* pre = reader.find(root, "pre_tokenizer");
  reader.pre_tokenizer(pre ? *pre : null_json, "pre_tokenizer", impl->pre_steps);
  const auto byte_level =
      std::count_if(impl->pre_steps.begin(), impl->pre_steps.end(),
                    [](const PreTokenizerStep& s) { return s.kind == PreTokenizerStep::kByteLevel; });
  if (byte_level != 1 || impl->pre_steps.back().kind != PreTokenizerStep::kByteLevel) {
    reader.fail("pre_tokenizer",
                "expected exactly one ByteLevel, as the last step (HedgeLab reads byte-level BPE)");
  }
  reader.post_processor(field("post_processor"), "post_processor", impl->templates);
  impl->byte_level_decoder = reader.decoder(field("decoder"), "decoder");
  reader.added_tokens(field("added_tokens"), impl->model, impl->added);

  impl->normalizer_json = field("normalizer");
  impl->pre_tokenizer_json = field("pre_tokenizer");
  impl->post_processor_json = field("post_processor");
  impl->decoder_json = field("decoder");
  for (const auto& [token, id] : impl->model.vocab)
    impl->max_id = std::max(impl->max_id, id);
  impl->index_added_tokens();
  return Tokenizer(std::move(impl));
}

Tokenizer Tokenizer::byte_level_vocabulary() {
  auto impl = std::make_unique<Impl>();
  impl->source = "byte-level vocabulary";
  for (int b = 0; b < 256; ++b) {
    impl->model.vocab.emplace(detail::byte_symbol(static_cast<unsigned char>(b)), b);
    impl->model.id_to_token.push_back(detail::byte_symbol(static_cast<unsigned char>(b)));
  }
  impl->model.build(impl->source + ": model");
  impl->pre_steps.push_back(PreTokenizerStep{PreTokenizerStep::kByteLevel, false, true});
  detail::AddedToken eos;
  eos.id = 256;
  eos.content = "<|endoftext|>";
  eos.normalized = false;
  eos.special = true;
  impl->added.push_back(eos);
  impl->pre_tokenizer_json = byte_level_json(false);
  impl->decoder_json = byte_level_json(false);
  impl->max_id = 255;
  impl->index_added_tokens();
  return Tokenizer(std::move(impl));
}

std::string Tokenizer::to_json_text() const {
  const Impl& impl = *impl_;
  Json root;
  root["version"] = "1.0";
  root["truncation"] = nullptr;
  root["padding"] = nullptr;
  std::vector<const detail::AddedToken*> added;
  for (const auto& t : impl.added)
    added.push_back(&t);
  std::sort(added.begin(), added.end(), [](const auto* a, const auto* b) { return a->id < b->id; });
  root["added_tokens"] = Json::array();
  for (const auto* t : added)
    root["added_tokens"].push_back(added_token_json(*t));
  root["normalizer"] = impl.normalizer_json;
  root["pre_tokenizer"] = impl.pre_tokenizer_json;
  root["post_processor"] = impl.post_processor_json;
  root["decoder"] = impl.decoder_json;

  const detail::BpeModel& bpe = impl.model;
  auto or_null = [](const std::optional<std::string>& s) { return s ? Json(*s) : Json(nullptr); };
  Json model;
  model["type"] = "BPE";
  model["dropout"] = nullptr;
  model["unk_token"] = or_null(bpe.unk_token);
  model["continuing_subword_prefix"] = or_null(bpe.continuing_subword_prefix);
  model["end_of_word_suffix"] = or_null(bpe.end_of_word_suffix);
  model["fuse_unk"] = bpe.fuse_unk;
  model["byte_fallback"] = bpe.byte_fallback;
  model["ignore_merges"] = bpe.ignore_merges;
  std::vector<std::pair<TokenId, const std::string*>> by_id;
  by_id.reserve(bpe.vocab.size());
  for (const auto& [token, id] : bpe.vocab)
    by_id.emplace_back(id, &token);
  std::sort(by_id.begin(), by_id.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first < b.first : *a.second < *b.second;
  });
  Json vocab = Json::object();
  for (const auto& [id, token] : by_id)
    vocab[*token] = id;
  model["vocab"] = std::move(vocab);
  Json merges = Json::array();
  for (const auto& [a, b] : bpe.merges)
    merges.push_back(Json::array({a, b}));
  model["merges"] = std::move(merges);
  root["model"] = std::move(model);
  return root.dump(2, ' ', false) + "\n";
}

}  // namespace hedgelab::io
