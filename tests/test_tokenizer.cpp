// The byte-level BPE tokenizer: the GPT-2 split, NFC, merges, added tokens, streaming, the byte-level
// vocabulary, every refusal, and identity with the tokenizers library on its fixture.
#include <QTest>
#include <atomic>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <thread>

#include "core/io/tokenizer.h"
#include "core/io/tokenizer_internal.h"
#include "core/io/unicode.h"
#include "tests/test_util.h"

using hedgelab::io::TokenId;
using hedgelab::io::Tokenizer;
using Json = nlohmann::ordered_json;

namespace {

std::vector<std::string> split(const std::string& text) {
  std::vector<std::pair<std::size_t, std::size_t>> ranges;
  hedgelab::io::detail::gpt2_split(text, ranges);
  std::vector<std::string> out;
  for (const auto& [b, e] : ranges)
    out.push_back(text.substr(b, e - b));
  return out;
}

std::string show(const std::vector<std::string>& pieces) {
  std::string s;
  for (const auto& p : pieces)
    s += "[" + p + "]";
  return s;
}

std::string show(const std::vector<TokenId>& ids) {
  std::string s;
  for (TokenId id : ids)
    s += std::to_string(id) + " ";
  return s;
}

// byte_level_vocabulary() as JSON, to derive small test tokenizers from.
Json byte_level_json() {
  return Json::parse(Tokenizer::byte_level_vocabulary().to_json_text());
}

// Adds merges (each result gets the next id) to a tokenizer JSON.
void add_merges(Json& j, const std::vector<std::pair<std::string, std::string>>& merges, bool as_pairs) {
  TokenId next = 0;
  for (const auto& [token, id] : j["model"]["vocab"].items())
    next = std::max(next, id.get<TokenId>() + 1);
  for (const auto& t : j["added_tokens"])
    next = std::max(next, t["id"].get<TokenId>() + 1);
  for (const auto& [a, b] : merges) {
    if (!j["model"]["vocab"].contains(a + b)) j["model"]["vocab"][a + b] = next++;
    if (as_pairs) {
      j["model"]["merges"].push_back(Json::array({a, b}));
    } else {
      j["model"]["merges"].push_back(a + " " + b);
    }
  }
}

void add_token(Json& j, const std::string& content, bool special, bool normalized, bool lstrip = false,
               bool rstrip = false, bool single_word = false) {
  TokenId next = 0;
  for (const auto& [token, id] : j["model"]["vocab"].items())
    next = std::max(next, id.get<TokenId>() + 1);
  for (const auto& t : j["added_tokens"])
    next = std::max(next, t["id"].get<TokenId>() + 1);
  j["added_tokens"].push_back(Json{{"id", next},
                                   {"content", content},
                                   {"single_word", single_word},
                                   {"lstrip", lstrip},
                                   {"rstrip", rstrip},
                                   {"normalized", normalized},
                                   {"special", special}});
}

Tokenizer load(const Json& j) {
  return Tokenizer::from_json_text(j.dump(), "test/tokenizer.json");
}

std::vector<TokenId> bytes_of(const std::string& s) {
  std::vector<TokenId> ids;
  for (unsigned char c : s)
    ids.push_back(c);
  return ids;
}

std::vector<TokenId> stream(const Tokenizer& tok, const std::string& text, std::size_t chunk,
                            int* calls = nullptr) {
  std::istringstream in(text);
  std::vector<TokenId> ids;
  tok.encode_stream(
      in,
      [&](const std::vector<TokenId>& piece) {
        ids.insert(ids.end(), piece.begin(), piece.end());
        if (calls) ++*calls;
      },
      chunk);
  return ids;
}

// Random text from pieces chosen to stress the split, NFC and added tokens.
std::string random_text(std::mt19937& rng, int pieces) {
  static const std::vector<std::string> kPieces = {"hello",       "the",
                                                   " ",           "  ",
                                                   "   ",         "\n",
                                                   "\n\n",        "\t",
                                                   " \n ",        "'s",
                                                   "'S",          "'ll",
                                                   "'",           "42",
                                                   "3.14",        "é",
                                                   "e\u0301",     "cafe\u0301",
                                                   "\u0301",      "\u1100\u1161",
                                                   "\u11A8",      "한국어",
                                                   "日本語",      "。",
                                                   "😀",           "\u3000",
                                                   "\u00a0",      "!",
                                                   "?!",          "--",
                                                   "_x",          "<|endoftext|>",
                                                   "<|padding|>", "[MASK]",
                                                   " [MASK] ",    "Ⅻ",
                                                   "٣",           "a\u0323\u0302",
                                                   "\u212B",      "ﬁ",
                                                   "x",           "A",
                                                   "Z",           "hi"};
  std::string s;
  std::uniform_int_distribution<std::size_t> pick(0, kPieces.size() - 1);
  for (int i = 0; i < pieces; ++i)
    s += kPieces[pick(rng)];
  return s;
}

// Random valid UTF-8 over the whole code space (no surrogates).
std::string random_utf8(std::mt19937& rng, int chars) {
  std::string s;
  std::uniform_int_distribution<int> kind(0, 9);
  for (int i = 0; i < chars; ++i) {
    char32_t cp;
    switch (kind(rng)) {
      case 0:
      case 1:
      case 2:
        cp = std::uniform_int_distribution<char32_t>(0, 0x7F)(rng);
        break;
      case 3:
        cp = std::uniform_int_distribution<char32_t>(0x80, 0x7FF)(rng);
        break;
      case 4:
        cp = U' ';
        break;
      default:
        do {
          cp = std::uniform_int_distribution<char32_t>(0x800, 0x10FFFF)(rng);
        } while (cp >= 0xD800 && cp <= 0xDFFF);
    }
    hedgelab::io::unicode::append_utf8(s, cp);
  }
  return s;
}

void check_fixture(const std::filesystem::path& dir) {
  const Tokenizer tok = Tokenizer::from_file(dir / "tokenizer.json");
  const auto cases = nlohmann::json::parse(hedgelab::testing::read_file(dir / "cases.json"));
  QVERIFY(cases["cases"].size() > 0);
  int index = 0;
  for (const auto& c : cases["cases"]) {
    const std::string text = c["text"].get<std::string>();
    const auto expected = c["ids"].get<std::vector<TokenId>>();
    const auto ids = tok.encode(text);
    QVERIFY2(ids == expected, ("case " + std::to_string(index) + " " + nlohmann::json(text).dump() +
                               ": got " + show(ids) + "expected " + show(expected))
                                  .c_str());
    QCOMPARE(tok.decode(expected, false), c["decoded"].get<std::string>());
    QCOMPARE(stream(tok, text, 7), expected);
    ++index;
  }
}

}  // namespace

class TestTokenizer : public QObject {
  Q_OBJECT
 private Q_SLOTS:
  // ---- The GPT-2 split
  // ----------------------------------------------------------------------------------------
  void split_contractions_are_case_sensitive_ascii() {
    QCOMPARE(show(split("it's")), std::string("[it]['s]"));
    QCOMPARE(show(split("we'll they're I've I'm he'd don't")),
             std::string("[we]['ll][ they]['re][ I]['ve][ I]['m][ he]['d][ don]['t]"));
    QCOMPARE(show(split("IT'S")), std::string("[IT]['][S]"));  // uppercase is no contraction
    QCOMPARE(show(split("'x")), std::string("['][x]"));
    QCOMPARE(show(split(" 's")), std::string("[ '][s]"));    // the space takes the apostrophe as "other"
    QCOMPARE(show(split("!!'s")), std::string("[!!'][s]"));  // a greedy run does not restart for 's
  }
  void split_letters_numbers_other() {
    QCOMPARE(show(split("Hello world")), std::string("[Hello][ world]"));
    QCOMPARE(show(split("abc123def")), std::string("[abc][123][def]"));
    QCOMPARE(show(split(" 2024 is 3.14")), std::string("[ 2024][ is][ 3][.][14]"));
    QCOMPARE(show(split("x += 1;")), std::string("[x][ +=][ 1][;]"));
    QCOMPARE(show(split("Ⅻ٣")), std::string("[Ⅻ٣]"));  // Nl and Nd are both \p{N}
    QCOMPARE(show(split("日本語。テスト")), std::string("[日本語][。][テスト]"));
    QCOMPARE(show(split("hi 😀😀!")), std::string("[hi][ 😀😀!]"));
    QCOMPARE(show(split("e\u0301")), std::string("[e][\u0301]"));  // a combining mark is "other"
    QCOMPARE(show(split("_x")), std::string("[_][x]"));
  }
  void split_whitespace_runs() {
    QCOMPARE(show(split("a   b")), std::string("[a][  ][ b]"));
    QCOMPARE(show(split("a b")), std::string("[a][ b]"));
    QCOMPARE(show(split("a\nb")), std::string("[a][\n][b]"));
    QCOMPARE(show(split("a\n\nb")), std::string("[a][\n][\n][b]"));
    QCOMPARE(show(split("a \n b")), std::string("[a][ \n][ b]"));
    QCOMPARE(show(split("a\t\t!")), std::string("[a][\t][\t][!]"));
    QCOMPARE(show(split("a   ")), std::string("[a][   ]"));  // at the end the run is taken whole
    QCOMPARE(show(split("   ")), std::string("[   ]"));
    QCOMPARE(show(split(" ")), std::string("[ ]"));
    QCOMPARE(show(split("a\u3000b")), std::string("[a][\u3000][b]"));  // ` ?` is U+0020 only
    QCOMPARE(show(split("a \u00a0b")), std::string("[a][ ][\u00a0][b]"));
    QCOMPARE(show(split("a\u00a0 b")), std::string("[a][\u00a0][ b]"));
    QCOMPARE(show(split("x\x1c")), std::string("[x][\x1c]"));  // U+001C is not White_Space
  }
  void split_covers_random_text_exactly() {
    std::mt19937 rng(7);
    for (int i = 0; i < 300; ++i) {
      const std::string text = i % 2 ? random_text(rng, 20) : random_utf8(rng, 40);
      std::string joined;
      for (const auto& p : split(text)) {
        QVERIFY(!p.empty());
        joined += p;
      }
      QCOMPARE(joined, text);
    }
  }

  // ---- Unicode
  // ------------------------------------------------------------------------------------------------
  void utf8_validation() {
    using hedgelab::io::unicode::find_invalid_utf8;
    using hedgelab::io::unicode::kValid;
    QCOMPARE(find_invalid_utf8("plain é 日 😀"), kValid);
    QCOMPARE(find_invalid_utf8("ab\xC3"), std::size_t{2});
    QCOMPARE(find_invalid_utf8("ab\xC3", true), kValid);           // a truncated tail may be completed later
    QCOMPARE(find_invalid_utf8("\xC0\xAF"), std::size_t{0});       // overlong
    QCOMPARE(find_invalid_utf8("a\xED\xA0\x80"), std::size_t{1});  // surrogate
    QCOMPARE(find_invalid_utf8("ab\xF4\x90\x80\x80"), std::size_t{2});  // above U+10FFFF
    QCOMPARE(find_invalid_utf8("x\x80"), std::size_t{1});
    QCOMPARE(hedgelab::io::unicode::utf8_lossy("a\xF0\x9F\x98z\xFF"), std::string("a\uFFFDz\uFFFD"));
  }
  void nfc_normalization() {
    using hedgelab::io::unicode::nfc;
    QCOMPARE(nfc("e\u0301"), std::string("\u00e9"));
    QCOMPARE(nfc("cafe\u0301!"), std::string("caf\u00e9!"));
    QCOMPARE(nfc("a\u0323\u0302"), std::string("\u1ead"));       // ậ → ậ
    QCOMPARE(nfc("a\u0302\u0323"), std::string("\u1ead"));       // reordered first
    QCOMPARE(nfc("\u1100\u1161\u11A8"), std::string("\uAC01"));  // Hangul L V T
    QCOMPARE(nfc("\uAC00\u11A8"), std::string("\uAC01"));
    QCOMPARE(nfc("\u212B"), std::string("\u00C5"));        // singleton
    QCOMPARE(nfc("\u0958"), std::string("\u0915\u093C"));  // composition exclusion
    QCOMPARE(nfc("\uFB01"), std::string("\uFB01"));        // compatibility only: untouched
    QCOMPARE(nfc("\u0301e"), std::string("\u0301e"));      // leading mark stays
    QCOMPARE(nfc("plain ascii"), std::string("plain ascii"));
    QVERIFY(std::string(hedgelab::io::unicode::unicode_version()).size() >= 4);
  }

  // ---- Encoding
  // -----------------------------------------------------------------------------------------------
  void empty_string() {
    const Tokenizer tok = Tokenizer::byte_level_vocabulary();
    QVERIFY(tok.encode("").empty());
    QCOMPARE(tok.decode({}), std::string());
    Json j = byte_level_json();
    j["pre_tokenizer"]["add_prefix_space"] = true;
    QVERIFY(load(j).encode("").empty());  // no prefix space for nothing
  }
  void nfc_only_when_asked() {
    const std::string decomposed = "e\u0301";
    const Tokenizer plain = Tokenizer::byte_level_vocabulary();
    QCOMPARE(plain.encode(decomposed), bytes_of(decomposed));
    Json j = byte_level_json();
    j["normalizer"] = Json{{"type", "NFC"}};
    QCOMPARE(load(j).encode(decomposed), bytes_of("\u00e9"));
    j["normalizer"] = Json{{"type", "Sequence"}, {"normalizers", Json::array({Json{{"type", "NFC"}}})}};
    QCOMPARE(load(j).encode(decomposed), bytes_of("\u00e9"));
  }
  void hand_computed_merges() {
    for (bool pairs : {false, true}) {
      Json j = byte_level_json();
      add_merges(j, {{"a", "b"}, {"ab", "c"}, {"Ġ", "a"}, {"a", "a"}}, pairs);
      const Tokenizer tok = load(j);
      const TokenId ab = *tok.token_to_id("ab"), abc = *tok.token_to_id("abc"), sp = *tok.token_to_id("Ġ"),
                    aa = *tok.token_to_id("aa"), ga = *tok.token_to_id("Ġa");
      QCOMPARE(tok.encode("abc"), (std::vector<TokenId>{abc}));
      // " ab": (a,b) ranks below (Ġ,a), so Ġ is left alone.
      QCOMPARE(tok.encode(" ab"), (std::vector<TokenId>{sp, ab}));
      QCOMPARE(tok.encode(" ac"), (std::vector<TokenId>{ga, 'c'}));
      QCOMPARE(tok.encode("aaa"), (std::vector<TokenId>{aa, 'a'}));  // leftmost first on equal ranks
      QCOMPARE(tok.encode("aaaa"), (std::vector<TokenId>{aa, aa}));
      QCOMPARE(tok.encode("abc abc"), (std::vector<TokenId>{abc, sp, abc}));
      QCOMPARE(tok.decode(tok.encode("abc aaa")), std::string("abc aaa"));
    }
  }
  void ignore_merges_and_model_options() {
    Json j = byte_level_json();
    add_merges(j, {{"x", "y"}}, true);
    j["model"]["vocab"]["xyz"] = 400;  // reachable only whole
    QCOMPARE(load(j).encode("xyz"), (std::vector<TokenId>{*load(j).token_to_id("xy"), 'z'}));
    j["model"]["ignore_merges"] = true;
    QCOMPARE(load(j).encode("xyz"), (std::vector<TokenId>{400}));
    // unk_token, fuse_unk, byte_fallback on a vocabulary that lacks "q".
    Json u = byte_level_json();
    u["model"]["vocab"].erase("q");
    u["model"]["vocab"]["<unk>"] = 500;
    QCOMPARE(load(u).encode("aqqb"),
             (std::vector<TokenId>{'a', 'b'}));  // no unk: dropped, as the library does
    u["model"]["unk_token"] = "<unk>";
    QCOMPARE(load(u).encode("aqqb"), (std::vector<TokenId>{'a', 500, 500, 'b'}));
    u["model"]["fuse_unk"] = true;
    QCOMPARE(load(u).encode("aqqb"), (std::vector<TokenId>{'a', 500, 'b'}));
    u["model"]["byte_fallback"] = true;
    u["model"]["vocab"]["<0x71>"] = 501;
    QCOMPARE(load(u).encode("aqb"), (std::vector<TokenId>{'a', 501, 'b'}));
    // continuing_subword_prefix / end_of_word_suffix take part in lookups and merges.
    Json p = byte_level_json();
    p["model"]["continuing_subword_prefix"] = "##";
    p["model"]["vocab"]["##b"] = 600;
    p["model"]["vocab"]["ab"] = 601;
    p["model"]["merges"].push_back(Json::array({"a", "##b"}));
    QCOMPARE(load(p).encode("ab"), (std::vector<TokenId>{601}));
  }
  void add_prefix_space() {
    Json j = byte_level_json();
    j["pre_tokenizer"]["add_prefix_space"] = true;
    const Tokenizer tok = load(j);
    QCOMPARE(tok.encode("hi"), bytes_of(" hi"));
    QCOMPARE(tok.encode(" hi"), bytes_of(" hi"));
    Json s = byte_level_json();
    s["pre_tokenizer"] =
        Json{{"type", "Sequence"},
             {"pretokenizers", Json::array({Json{{"type", "Split"},
                                                 {"pattern", {{"Regex", hedgelab::io::detail::kGpt2Pattern}}},
                                                 {"behavior", "Isolated"},
                                                 {"invert", false}},
                                            Json{{"type", "ByteLevel"},
                                                 {"add_prefix_space", true},
                                                 {"trim_offsets", true},
                                                 {"use_regex", false}}})}};
    QCOMPARE(load(s).encode("a!"), bytes_of(" a !"));  // every piece gets its space
  }
  void decode_roundtrips_many_strings() {
    Json j = byte_level_json();
    add_merges(j, {{"Ġ", "t"}, {"h", "e"}, {"Ġt", "he"}, {"Ã", "©"}, {"ä", "¸"}, {"Ġ", "Ġ"}, {"ĠĠ", "ĠĠ"}},
               true);
    const Tokenizer tok = load(j);
    std::mt19937 rng(11);
    for (int i = 0; i < 400; ++i) {
      const std::string text = i % 2 ? random_text(rng, 25) : random_utf8(rng, 60);
      QCOMPARE(tok.decode(tok.encode(text)), text);
    }
    for (const char* s : {"", " ", "the the  the", "\n\n\t x", "日本語 😀", "<|endoftext|>"}) {
      QCOMPARE(tok.decode(tok.encode(s)), std::string(s));
    }
  }
  void invalid_utf8_is_refused() {
    const Tokenizer tok = Tokenizer::byte_level_vocabulary();
    HL_EXPECT_ERROR(tok.encode("ok\xFFno"), "text", "invalid UTF-8 at byte 2");
    HL_EXPECT_ERROR(tok.encode("abc\xE2\x82"), "invalid UTF-8 at byte 3");
    std::string big(5000, 'a');
    big += "\xC3(";
    HL_EXPECT_ERROR(stream(tok, big, 64), "invalid UTF-8 at byte 5000");
    HL_EXPECT_ERROR(stream(tok, std::string(300, 'b') + "\xF0\x9F", 16), "invalid UTF-8 at byte 300");
  }
  void thread_safe_encode() {
    Json j = byte_level_json();
    add_merges(j, {{"Ġ", "t"}, {"h", "e"}, {"Ġt", "he"}}, true);
    const Tokenizer tok = load(j);
    std::mt19937 rng(3);
    std::vector<std::string> texts;
    for (int i = 0; i < 50; ++i)
      texts.push_back(random_text(rng, 30));
    std::vector<std::vector<TokenId>> expected;
    for (const auto& t : texts)
      expected.push_back(tok.encode(t));
    std::atomic<int> mismatches{0};
    auto work = [&] {
      for (int r = 0; r < 4; ++r) {
        for (std::size_t i = 0; i < texts.size(); ++i) {
          if (tok.encode(texts[i]) != expected[i]) ++mismatches;
        }
      }
    };
    std::thread a(work), b(work);
    a.join();
    b.join();
    QCOMPARE(mismatches.load(), 0);
  }

  // ---- Added tokens
  // -------------------------------------------------------------------------------------------
  void added_tokens_split_and_skip() {
    Json j = byte_level_json();
    add_token(j, "<|padding|>", true, false);
    add_token(j, "  ", false, true);
    add_token(j, "   ", false, true);
    const Tokenizer tok = load(j);
    const TokenId eos = 256, pad = 257, two = 258, three = 259;
    QCOMPARE(tok.eos_id(), std::optional<TokenId>(eos));
    QCOMPARE(tok.vocab_size(), std::size_t{260});
    QCOMPARE(tok.encode("a<|endoftext|>b"), (std::vector<TokenId>{'a', eos, 'b'}));
    QCOMPARE(tok.encode("a     b"), (std::vector<TokenId>{'a', three, two, 'b'}));  // leftmost-longest
    QCOMPARE(tok.encode("<|endoftext|><|padding|>"), (std::vector<TokenId>{eos, pad}));
    QCOMPARE(tok.decode({'a', eos, pad, two, 'b'}), std::string("a<|endoftext|><|padding|>  b"));
    QCOMPARE(tok.decode({'a', eos, pad, two, 'b'}, true), std::string("a  b"));
    QCOMPARE(tok.decode({'a', 9999, 'b'}), std::string("ab"));  // unknown ids are dropped
    QVERIFY(tok.is_special(eos) && !tok.is_special(two));
    QCOMPARE(tok.id_to_token(two), std::string("  "));
    QCOMPARE(tok.id_to_token('a'), std::string("a"));
    QCOMPARE(tok.id_to_token(100000), std::string());
  }
  void added_tokens_strip_and_single_word() {
    Json j = byte_level_json();
    add_token(j, "[M]", true, false, /*lstrip=*/true, /*rstrip=*/true);
    add_token(j, "cat", false, false, false, false, /*single_word=*/true);
    const Tokenizer tok = load(j);
    const TokenId m = *tok.token_to_id("[M]"), cat = *tok.token_to_id("cat");
    QCOMPARE(tok.encode("hi  [M]\tthere"), (std::vector<TokenId>{'h', 'i', m, 't', 'h', 'e', 'r', 'e'}));
    QCOMPARE(tok.encode("[M][M]"), (std::vector<TokenId>{m, m}));
    QCOMPARE(tok.encode("a cat."), (std::vector<TokenId>{'a', ' ', cat, '.'}));
    QCOMPARE(tok.encode("cats"), bytes_of("cats"));  // not a single word
    QCOMPARE(tok.encode("écat"), bytes_of("écat"));  // é is a word character
    QCOMPARE(tok.encode("_cat"), bytes_of("_cat"));  // so is _
  }
  void normalized_tokens_match_normalized_text() {
    Json j = byte_level_json();
    j["normalizer"] = Json{{"type", "NFC"}};
    add_token(j, "caf\u00e9", false, true);  // matched after NFC
    add_token(j, "ne\u0301e", true, false);  // raw: matched before NFC, as written
    const Tokenizer tok = load(j);
    const TokenId cafe = *tok.token_to_id("caf\u00e9"), nee = *tok.token_to_id("ne\u0301e");
    QCOMPARE(tok.encode("cafe\u0301"), (std::vector<TokenId>{cafe}));
    QCOMPARE(tok.encode("ne\u0301e"), (std::vector<TokenId>{nee}));
    QCOMPARE(tok.encode("n\u00e9e"), bytes_of("n\u00e9e"));
  }
  void template_post_processor() {
    Json j = byte_level_json();
    j["post_processor"] =
        Json{{"type", "TemplateProcessing"},
             {"single", Json::array({Json{{"SpecialToken", {{"id", "<|endoftext|>"}, {"type_id", 0}}}},
                                     Json{{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                                     Json{{"SpecialToken", {{"id", "<|endoftext|>"}, {"type_id", 0}}}}})},
             {"pair", Json::array()},
             {"special_tokens",
              {{"<|endoftext|>", {{"id", "<|endoftext|>"}, {"ids", {256}}, {"tokens", {"<|endoftext|>"}}}}}}};
    const Tokenizer tok = load(j);
    QCOMPARE(tok.encode("ab"), (std::vector<TokenId>{256, 'a', 'b', 256}));
    QCOMPARE(tok.encode("ab", false), (std::vector<TokenId>{'a', 'b'}));
    QCOMPARE(stream(tok, "ab", 1), (std::vector<TokenId>{256, 'a', 'b', 256}));
    QCOMPARE(tok.decode(tok.encode("ab"), true), std::string("ab"));
    QVERIFY(load(Json::parse(tok.to_json_text())).encode("ab") == tok.encode("ab"));
  }

  // ---- Streaming
  // ----------------------------------------------------------------------------------------------
  void streaming_equals_whole_encode() {
    std::vector<Tokenizer> toks;
    toks.push_back(
        Tokenizer::from_file(hedgelab::testing::fixtures_dir() / "tokenizer_handmade" / "tokenizer.json"));
    Json j = byte_level_json();
    j["pre_tokenizer"]["add_prefix_space"] = true;
    add_merges(j, {{"Ġ", "t"}, {"h", "e"}, {"Ġt", "he"}, {"Ġ", "Ġ"}}, true);
    add_token(j, "[MASK]", true, false, true, true);
    add_token(j, "hel", false, true, false, false, true);
    toks.push_back(load(j));
    j["normalizer"] = Json{{"type", "NFC"}};
    j["pre_tokenizer"]["add_prefix_space"] = false;
    toks.push_back(load(j));
    toks.push_back(Tokenizer::byte_level_vocabulary());
    std::mt19937 rng(5);
    int total_calls = 0;
    for (int i = 0; i < 120; ++i) {
      const std::string text = i % 4 == 3 ? random_utf8(rng, 300) : random_text(rng, 120);
      for (const Tokenizer& tok : toks) {
        const auto whole = tok.encode(text);
        for (std::size_t chunk : {1, 3, 17, 64, 1000}) {
          int calls = 0;
          const auto streamed = stream(tok, text, chunk, &calls);
          total_calls += calls;
          QVERIFY2(streamed == whole,
                   ("text " + nlohmann::json(text).dump() + " chunk " + std::to_string(chunk)).c_str());
        }
      }
    }
    QVERIFY(total_calls > 4 * 120 * 5);  // texts really were cut
    // A long single pre-token is read whole rather than cut.
    const std::string word(5000, 'x');
    QCOMPARE(stream(toks[0], word, 10), toks[0].encode(word));
  }
  void default_stream_reads_big_inputs() {
    const Tokenizer tok =
        Tokenizer::from_file(hedgelab::testing::fixtures_dir() / "tokenizer_handmade" / "tokenizer.json");
    std::string text;
    std::mt19937 rng(9);
    while (text.size() < 3'000'000)
      text += random_text(rng, 50);
    std::istringstream in(text);
    std::vector<TokenId> ids;
    std::size_t largest = 0;
    tok.encode_stream(in, [&](const std::vector<TokenId>& piece) {
      ids.insert(ids.end(), piece.begin(), piece.end());
      largest = std::max(largest, piece.size());
    });
    QCOMPARE(ids, tok.encode(text));
    QVERIFY(largest < 1'200'000);  // pieces of about 1 MiB, not the whole input
  }

  // ---- Byte-level vocabulary
  // ----------------------------------------------------------------------------------
  void byte_level_vocabulary_roundtrip() {
    const Tokenizer tok = Tokenizer::byte_level_vocabulary();
    QCOMPARE(tok.vocab_size(), std::size_t{257});
    QCOMPARE(tok.eos_id(), std::optional<TokenId>(256));
    std::string all;
    for (int b = 0; b < 256; ++b)
      all.push_back(static_cast<char>(b));
    for (int b = 0; b < 256; ++b) {
      QCOMPARE(tok.id_to_token(b), hedgelab::io::detail::byte_symbol(static_cast<unsigned char>(b)));
    }
    QCOMPARE(tok.id_to_token(32), std::string("Ġ"));
    QCOMPARE(tok.id_to_token(10), std::string("Ċ"));
    const std::string text = "Hello, world! é 日本 😀\n\t";
    QCOMPARE(tok.encode(text), bytes_of(text));
    QCOMPARE(tok.decode(bytes_of(text)), text);
    QCOMPARE(tok.decode({0xC3}), std::string("\uFFFD"));  // a lone byte decodes lossily
    QCOMPARE(tok.encode("a<|endoftext|>"), (std::vector<TokenId>{'a', 256}));

    const std::string json_text = tok.to_json_text();
    const Json j = Json::parse(json_text);
    QCOMPARE(j["version"].get<std::string>(), std::string("1.0"));
    QVERIFY(j["truncation"].is_null() && j["padding"].is_null() && j["normalizer"].is_null());
    QCOMPARE(j["pre_tokenizer"]["type"].get<std::string>(), std::string("ByteLevel"));
    QCOMPARE(j["pre_tokenizer"]["add_prefix_space"].get<bool>(), false);
    QCOMPARE(j["pre_tokenizer"]["use_regex"].get<bool>(), true);
    QCOMPARE(j["decoder"]["type"].get<std::string>(), std::string("ByteLevel"));
    QCOMPARE(j["added_tokens"].size(), std::size_t{1});
    QCOMPARE(j["added_tokens"][0]["content"].get<std::string>(), std::string("<|endoftext|>"));
    QCOMPARE(j["added_tokens"][0]["special"].get<bool>(), true);
    for (const char* key : {"type", "dropout", "unk_token", "continuing_subword_prefix", "end_of_word_suffix",
                            "fuse_unk", "byte_fallback", "ignore_merges", "vocab", "merges"}) {
      QVERIFY2(j["model"].contains(key), key);
    }
    QCOMPARE(j["model"]["vocab"].size(), std::size_t{256});
    QCOMPARE(j["model"]["vocab"].begin().key(), std::string("\u0100"));  // id 0 (byte 0) first
    QCOMPARE(j["model"]["vocab"]["!"].get<int>(), 0x21);
    const Tokenizer again = Tokenizer::from_json_text(json_text, "roundtrip");
    QCOMPARE(again.to_json_text(), json_text);
    QCOMPARE(again.encode(text), tok.encode(text));
    // A richer tokenizer round-trips too.
    const Tokenizer hand =
        Tokenizer::from_file(hedgelab::testing::fixtures_dir() / "tokenizer_handmade" / "tokenizer.json");
    const Tokenizer hand2 = Tokenizer::from_json_text(hand.to_json_text(), "roundtrip");
    QCOMPARE(hand2.to_json_text(), hand.to_json_text());
    QCOMPARE(hand2.encode("hello the  café<|endoftext|>"), hand.encode("hello the  café<|endoftext|>"));
  }

  // ---- Errors
  // -------------------------------------------------------------------------------------------------
  void file_errors() {
    hedgelab::testing::TempDir dir;
    HL_EXPECT_ERROR(Tokenizer::from_file(dir / "missing.json"), "missing.json", "no such file");
    HL_EXPECT_ERROR(Tokenizer::from_file(dir.path()), "is a directory");
    hedgelab::testing::write_file(dir / "bad.json", "{\"model\": \n[1, 2,");
    HL_EXPECT_ERROR(Tokenizer::from_file(dir / "bad.json"), "bad.json", "not valid JSON");
    hedgelab::testing::write_file(dir / "array.json", "[1, 2]");
    HL_EXPECT_ERROR(Tokenizer::from_file(dir / "array.json"), "array.json",
                    "expected a tokenizer.json object");
  }
  void model_errors() {
    const char* src = "test/tokenizer.json";
    Json j = byte_level_json();
    j.erase("model");
    HL_EXPECT_ERROR(load(j), src, "model", "missing");
    for (const char* type : {"WordPiece", "Unigram", "WordLevel"}) {
      Json k = byte_level_json();
      k["model"]["type"] = type;
      HL_EXPECT_ERROR(load(k), "test/tokenizer.json: model.type: \"", type,
                      "is not supported (HedgeLab reads byte-level BPE)");
    }
    auto expect = [&](const std::function<void(Json&)>& edit, std::vector<const char*> fragments) {
      Json k = byte_level_json();
      edit(k);
      try {
        load(k);
      } catch (const hedgelab::Error& e) {
        const std::string msg = e.what();
        QVERIFY2(msg.find('\n') == std::string::npos, msg.c_str());
        QVERIFY2(msg.find(src) != std::string::npos, msg.c_str());
        for (const char* f : fragments)
          QVERIFY2(msg.find(f) != std::string::npos, (msg + " lacks " + f).c_str());
        return;
      }
      QFAIL(("no error for " + k.dump().substr(0, 200)).c_str());
    };
    expect([](Json& k) { k["model"] = 3; }, {"model", "expected the BPE model object"});
    expect([](Json& k) { k["model"]["type"] = 1; }, {"model.type", "expected a string"});
    expect([](Json& k) { k["model"]["vocab"] = Json::array(); }, {"model.vocab", "expected an object"});
    expect([](Json& k) { k["model"].erase("vocab"); }, {"model.vocab", "missing"});
    expect([](Json& k) { k["model"]["vocab"]["zz"] = "7"; }, {"model.vocab[\"zz\"]", "expected a token id"});
    expect([](Json& k) { k["model"]["vocab"]["zz"] = -1; }, {"model.vocab[\"zz\"]", "expected a token id"});
    expect([](Json& k) { k["model"].erase("merges"); }, {"model.merges", "missing"});
    expect([](Json& k) { k["model"]["merges"] = Json::array({"a b c"}); },
           {"model.merges[0]", "exactly one space"});
    expect([](Json& k) { k["model"]["merges"] = Json::array({7}); }, {"model.merges[0]", "expected"});
    expect([](Json& k) { k["model"]["merges"] = Json::array({"a xyz"}); },
           {"model.merges[0]", "\"xyz\" is not in model.vocab"});
    expect([](Json& k) { k["model"]["merges"] = Json::array({"a b"}); },
           {"model.merges[0]", "merge result \"ab\""});
    expect([](Json& k) { k["model"]["dropout"] = 0.1; }, {"model.dropout", "0.1 is not supported"});
    expect([](Json& k) { k["model"]["unk_token"] = "<unk>"; }, {"model.unk_token", "not in model.vocab"});
    expect([](Json& k) { k["model"]["fuse_unk"] = "yes"; }, {"model.fuse_unk", "expected true or false"});
    expect([](Json& k) { k["model"]["unk_token"] = 5; }, {"model.unk_token", "expected a string or null"});
    expect(
        [](Json& k) {
          k["normalizer"] = Json{{"type", "NFKC"}};
        },
        {"normalizer.type", "\"NFKC\" is not supported"});
    expect(
        [](Json& k) {
          k["normalizer"] = Json{{"type", "Sequence"}, {"normalizers", {Json{{"type", "Lowercase"}}}}};
        },
        {"normalizer.normalizers[0].type", "\"Lowercase\""});
    expect([](Json& k) { k["normalizer"] = Json{{"kind", "NFC"}}; }, {"normalizer.type", "missing"});
    expect([](Json& k) { k["pre_tokenizer"] = nullptr; }, {"pre_tokenizer", "null is not supported"});
    expect(
        [](Json& k) {
          k["pre_tokenizer"] = Json{{"type", "Whitespace"}};
        },
        {"pre_tokenizer.type", "\"Whitespace\""});
    expect([](Json& k) { k["pre_tokenizer"].erase("add_prefix_space"); },
           {"pre_tokenizer.add_prefix_space", "missing"});
    expect(
        [](Json& k) {
          k["pre_tokenizer"] =
              Json{{"type", "Sequence"},
                   {"pretokenizers",
                    {Json{{"type", "Split"}, {"pattern", {{"Regex", "\\s+"}}}, {"behavior", "Isolated"}},
                     k["pre_tokenizer"]}}};
        },
        {"pre_tokenizer.pretokenizers[0].pattern.Regex", "GPT-2 pattern"});
    expect(
        [](Json& k) {
          k["pre_tokenizer"] = Json{{"type", "Sequence"},
                                    {"pretokenizers",
                                     {Json{{"type", "Split"},
                                           {"pattern", {{"Regex", hedgelab::io::detail::kGpt2Pattern}}},
                                           {"behavior", "Removed"}},
                                      k["pre_tokenizer"]}}};
        },
        {"pre_tokenizer.pretokenizers[0].behavior", "Isolated"});
    expect(
        [](Json& k) {
          k["pre_tokenizer"] = Json{{"type", "Sequence"}, {"pretokenizers", Json::array()}};
        },
        {"pre_tokenizer", "exactly one ByteLevel"});
    expect(
        [](Json& k) {
          k["post_processor"] = Json{{"type", "BertProcessing"}};
        },
        {"post_processor.type", "\"BertProcessing\""});
    expect(
        [](Json& k) {
          k["post_processor"] =
              Json{{"type", "TemplateProcessing"},
                   {"special_tokens", Json::object()},
                   {"single", {Json{{"SpecialToken", {{"id", "<s>"}}}}, Json{{"Sequence", {{"id", "A"}}}}}}};
        },
        {"post_processor.special_tokens", "\"<s>\""});
    expect([](Json& k) { k["decoder"] = Json{{"type", "WordPiece"}}; }, {"decoder.type", "\"WordPiece\""});
    expect([](Json& k) { k["added_tokens"] = Json::object(); }, {"added_tokens", "expected an array"});
    expect([](Json& k) { k["added_tokens"][0]["content"] = ""; },
           {"added_tokens[0].content", "non-empty string"});
    expect([](Json& k) { k["added_tokens"][0].erase("id"); }, {"added_tokens[0].id", "missing"});
    expect([](Json& k) { k["added_tokens"][0]["lstrip"] = 1; },
           {"added_tokens[0].lstrip", "expected true or false"});
    expect([](Json& k) { k["added_tokens"][0]["id"] = 5; },
           {"added_tokens[0].id", "already belongs to model.vocab"});
    expect([](Json& k) { k["added_tokens"].push_back(k["added_tokens"][0]); },
           {"added_tokens[1].content", "added twice"});
  }

  // ---- Fixtures
  // -----------------------------------------------------------------------------------------------
  void matches_handmade_fixture() { check_fixture(hedgelab::testing::fixtures_dir() / "tokenizer_handmade"); }
  // Produced with the Python tokenizers library (see tests/fixtures/bpe_tokenizer); fails until it lands.
  void matches_tokenizers_library_fixture() {
    check_fixture(hedgelab::testing::fixtures_dir() / "bpe_tokenizer");
  }
};

QTEST_APPLESS_MAIN(TestTokenizer)
#include "test_tokenizer.moc"
