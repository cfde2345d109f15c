// core/data: corpora of every kind, their errors, the tokenization cache, the held-out split, the batch
// cursor and the evaluation windows. Text goes through a byte encoder (id = byte), so expected ids are bytes.
#include <ATen/ATen.h>
#include <spdlog/spdlog.h>
#include <QTest>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "core/data/batches.h"
#include "core/data/corpus.h"
#include "core/data/utf8.h"
#include "tests/test_util.h"

using namespace hedgelab::data;
using hedgelab::testing::read_file;
using hedgelab::testing::TempDir;
using hedgelab::testing::write_file;

namespace {

constexpr int32_t kEos = 256;

std::vector<int32_t> bytes_of(const std::string& s) {
  std::vector<int32_t> v;
  for (unsigned char c : s)
    v.push_back(c);
  return v;
}

std::vector<int32_t> concat(std::initializer_list<std::vector<int32_t>> parts) {
  std::vector<int32_t> v;
  for (const auto& p : parts)
    v.insert(v.end(), p.begin(), p.end());
  return v;
}

std::vector<int32_t> all_ids(const TokenCorpus& c) {
  return c.all().to_vector();
}

// A corpus of n pseudo-random byte tokens in a .bin file: content is position-dependent, so a wrong window
// or a wrong range shows.
std::string bin_u16(const std::vector<uint16_t>& ids) {
  return std::string(reinterpret_cast<const char*>(ids.data()), ids.size() * 2);
}

TokenCorpus sequence_corpus(const TempDir& tmp, int64_t n, CorpusOptions opt = {}) {
  std::vector<uint16_t> ids(static_cast<std::size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    ids[static_cast<std::size_t>(i)] = static_cast<uint16_t>(i % 65521);
  write_file(tmp / "seq.bin", bin_u16(ids));
  return load_corpus(tmp / "seq.bin", TextEncoder{}, opt);
}

std::vector<int64_t> row(const at::Tensor& t, int64_t r) {
  auto x = t[r].contiguous();
  return std::vector<int64_t>(x.data_ptr<int64_t>(), x.data_ptr<int64_t>() + x.numel());
}

}  // namespace

class TestCorpus : public QObject {
  Q_OBJECT

  std::unique_ptr<TempDir> cache_;
  CorpusOptions opts() const {
    CorpusOptions o;
    o.cache_dir = cache_->path();
    return o;
  }

 private Q_SLOTS:
  void initTestCase() {
    spdlog::set_level(spdlog::level::err);  // expected warnings (damaged caches) would clutter the log
    cache_ = std::make_unique<TempDir>();
  }
  void cleanupTestCase() { cache_.reset(); }

  // ---- corpus kinds

  void text_file_is_one_document() {
    TempDir tmp;
    const std::string text = "h\xC3\xA9llo\nworld\n";
    write_file(tmp / "a.txt", text);
    const TokenCorpus c = load_corpus(tmp / "a.txt", byte_encoder(kEos), opts());
    QCOMPARE(all_ids(c), concat({bytes_of(text), {kEos}}));
    QCOMPARE(c.documents(), int64_t(1));
    QCOMPARE(c.size(), int64_t(text.size() + 1));
    QCOMPARE(c[1], int32_t(0xC3));
  }

  void other_extensions_are_text_and_bom_is_dropped() {
    TempDir tmp;
    write_file(tmp / "notes.md", "\xEF\xBB\xBFhi");
    const TokenCorpus c = load_corpus(tmp / "notes.md", byte_encoder(), opts());
    QCOMPARE(all_ids(c), bytes_of("hi"));
  }

  void large_text_read_in_pieces_loses_nothing() {
    TempDir tmp;
    std::string text;
    for (int i = 0; i < 3000; ++i)
      text += "line " + std::to_string(i) + (i % 7 ? " \xE2\x82\xAC\n" : "\n\n  ");
    text += std::string(500, 'x') + " \xF0\x9F\x98\x80 " + std::string(300, 'y');  // long lines, no newline
    write_file(tmp / "big.txt", text);
    CorpusOptions o = opts();
    o.text_piece_bytes = 64;
    std::vector<std::size_t> piece_sizes;
    TextEncoder enc = byte_encoder();
    const auto plain = enc.encode;
    enc.encode = [&](std::string_view s) {
      piece_sizes.push_back(s.size());
      return plain(s);
    };
    const TokenCorpus c = load_corpus(tmp / "big.txt", enc, o);
    QCOMPARE(all_ids(c), bytes_of(text));
    QVERIFY(piece_sizes.size() > 100);
    QVERIFY(*std::max_element(piece_sizes.begin(), piece_sizes.end()) <= 128);  // bounded memory
  }

  void folder_reads_sorted_files_with_eos_after_each_document() {
    TempDir tmp;
    const auto d = tmp.path();
    std::filesystem::create_directories(d / "a");
    std::filesystem::create_directories(d / ".git");
    write_file(d / "b.txt", "B");
    write_file(d / "a" / "z.txt", "Z");
    write_file(d / "a.jsonl", "{\"text\": \"j1\"}\n\n{\"text\": \"j2\"}\n");
    write_file(d / "c.md", "ignored");
    write_file(d / ".hidden.txt", "ignored");
    write_file(d / ".git" / "x.txt", "ignored");
    write_file(d / "empty.txt", "");
    const TokenCorpus c = load_corpus(d, byte_encoder(kEos), opts());
    // Byte order of paths: "a.jsonl" < "a/z.txt" ('.' < '/') < "b.txt" < "empty.txt" (empty: skipped).
    QCOMPARE(
        all_ids(c),
        concat(
            {bytes_of("j1"), {kEos}, bytes_of("j2"), {kEos}, bytes_of("Z"), {kEos}, bytes_of("B"), {kEos}}));
    QCOMPARE(c.documents(), int64_t(4));
    // Without EOS the documents simply follow one another.
    QCOMPARE(all_ids(load_corpus(d, byte_encoder(), opts())), bytes_of("j1j2ZB"));
  }

  void empty_inputs_are_errors() {
    TempDir tmp;
    std::filesystem::create_directories(tmp / "empty");
    HL_EXPECT_ERROR(load_corpus(tmp / "empty", byte_encoder(), opts()), "empty",
                    "holds no .txt or .jsonl files");
    std::filesystem::create_directories(tmp / "blank");
    write_file(tmp / "blank" / "a.txt", "");
    HL_EXPECT_ERROR(load_corpus(tmp / "blank", byte_encoder(), opts()), "blank", "holds no tokens");
    HL_EXPECT_ERROR(load_corpus(tmp / "missing.txt", byte_encoder(), opts()), "missing.txt",
                    "does not exist");
    write_file(tmp / "e.bin", "");
    HL_EXPECT_ERROR(load_corpus(tmp / "e.bin", TextEncoder{}, opts()), "e.bin", "holds no tokens");
    write_file(tmp / "t.txt", "text");
    HL_EXPECT_ERROR(load_corpus(tmp / "t.txt", TextEncoder{}, opts()), "t.txt", "needs a tokenizer");
  }

  void encoder_ids_are_checked() {
    TempDir tmp;
    write_file(tmp / "a.txt", "abc");
    TextEncoder enc = byte_encoder();
    enc.vocab_size = 98;  // 'b' = 98 is out of range
    HL_EXPECT_ERROR(load_corpus(tmp / "a.txt", enc, opts()), "a.txt", "id 98", "[0, 98)");
  }

  // ---- UTF-8

  void utf8_validator() {
    QVERIFY(!find_invalid_utf8("plain ascii, \xC3\xA9, \xE2\x82\xAC, \xF0\x9F\x98\x80, \xF4\x8F\xBF\xBF"));
    QCOMPARE(find_invalid_utf8("ab\xC0\xAF"), std::optional<std::size_t>(2));        // overlong '/'
    QCOMPARE(find_invalid_utf8("\xE0\x80\xAF"), std::optional<std::size_t>(0));      // overlong, 3 bytes
    QCOMPARE(find_invalid_utf8("\xF0\x80\x80\xAF"), std::optional<std::size_t>(0));  // overlong, 4 bytes
    QCOMPARE(find_invalid_utf8("x\xED\xA0\x80"), std::optional<std::size_t>(1));     // surrogate D800
    QCOMPARE(find_invalid_utf8("\xF4\x90\x80\x80"), std::optional<std::size_t>(0));  // above U+10FFFF
    QCOMPARE(find_invalid_utf8("abc\xE2\x82"), std::optional<std::size_t>(3));       // truncated at end
    QCOMPARE(find_invalid_utf8("abc\xE2\x82z"), std::optional<std::size_t>(3));      // truncated inside
    QCOMPARE(find_invalid_utf8("abcdefghijk\x80"), std::optional<std::size_t>(11));  // stray continuation
    QCOMPARE(find_invalid_utf8("\xFF"), std::optional<std::size_t>(0));
  }

  void invalid_utf8_names_file_and_byte() {
    TempDir tmp;
    const std::string prefix(1000, 'a');
    const std::vector<std::pair<std::string, std::string>> cases = {
        {prefix + "\xC0\xAF tail\n", "byte 1000)"},                // overlong
        {prefix + "\nok \xED\xA0\x80\n", "byte 1004)"},            // surrogate
        {prefix + "\xE2\x82", "byte 1000)"},                       // truncated at the end of the file
        {"\xEF\xBB\xBF" + prefix + "\xE2\x82 x\n", "byte 1003)"},  // offsets count the BOM
    };
    for (const auto& [text, fragment] : cases) {
      write_file(tmp / "bad.txt", text);
      CorpusOptions o = opts();
      o.text_piece_bytes = 100;  // the bad byte lies in a later piece: offsets are absolute
      HL_EXPECT_ERROR(load_corpus(tmp / "bad.txt", byte_encoder(), o), "bad.txt", "is not valid UTF-8",
                      fragment.c_str(), "iconv -t UTF-8");
    }
  }

  // ---- JSONL

  void jsonl_documents_and_field() {
    TempDir tmp;
    write_file(
        tmp / "d.jsonl",
        "{\"text\": \"one\", \"id\": 1}\r\n   \n{\"text\": \"\"}\n{\"body\": \"x\", \"text\": \"t\\u00e9\"}");
    const TokenCorpus c = load_corpus(tmp / "d.jsonl", byte_encoder(kEos), opts());
    QCOMPARE(all_ids(c), concat({bytes_of("one"), {kEos}, bytes_of("t\xC3\xA9"), {kEos}}));
    QCOMPARE(c.documents(), int64_t(2));
    CorpusOptions o = opts();
    o.text_field = "content";
    write_file(tmp / "e.jsonl", "{\"content\": \"abc\"}\n");
    QCOMPARE(all_ids(load_corpus(tmp / "e.jsonl", byte_encoder(), o)), bytes_of("abc"));
  }

  void jsonl_errors_name_line() {
    TempDir tmp;
    const std::string ok = "{\"text\": \"fine\"}\n\n";
    const auto expect = [&](const std::string& third_line, const char* fragment) {
      write_file(tmp / "bad.jsonl", ok + third_line + "\n");
      HL_EXPECT_ERROR(load_corpus(tmp / "bad.jsonl", byte_encoder(), opts()), "bad.jsonl: line 3",
                      "expected a JSON object with a string field \"text\"", fragment);
    };
    expect("{\"text\": \"unterminated}", "invalid JSON");
    expect("[\"text\"]", "found array");
    expect("{\"txt\": \"x\"}", "found no \"text\"");
    expect("{\"text\": 42}", "of type number");
    write_file(tmp / "bad.jsonl", ok + "{\"text\": \"\xED\xA0\x80\"}\n");
    HL_EXPECT_ERROR(load_corpus(tmp / "bad.jsonl", byte_encoder(), opts()), "bad.jsonl: line 3",
                    "is not valid UTF-8 (byte 28)");
  }

  // ---- .bin

  void bin_uint16_and_uint32() {
    TempDir tmp;
    write_file(tmp / "a.bin", bin_u16({1, 2, 65535, 7}));
    TextEncoder none;
    const TokenCorpus c16 = load_corpus(tmp / "a.bin", none, opts());
    QCOMPARE(all_ids(c16), (std::vector<int32_t>{1, 2, 65535, 7}));
    QCOMPARE(c16.cache_outcome(), CacheOutcome::NotUsed);

    const std::vector<uint32_t> ids32 = {5, 100000, 0};
    write_file(tmp / "b.bin", std::string(reinterpret_cast<const char*>(ids32.data()), 12));
    CorpusOptions o = opts();
    o.bin_dtype = BinDType::UInt32;
    QCOMPARE(all_ids(load_corpus(tmp / "b.bin", none, o)), (std::vector<int32_t>{5, 100000, 0}));

    none.vocab_size = 50000;
    HL_EXPECT_ERROR(load_corpus(tmp / "b.bin", none, o), "b.bin", "token 1", "id 100000", "50000");
    HL_EXPECT_ERROR(load_corpus(tmp / "a.bin", none, opts()), "a.bin", "token 2", "id 65535");
    write_file(tmp / "odd.bin", "abcde");
    HL_EXPECT_ERROR(load_corpus(tmp / "odd.bin", TextEncoder{}, opts()), "odd.bin", "5 bytes",
                    "not a multiple of 2");
    write_file(tmp / "six.bin", "abcdef");
    HL_EXPECT_ERROR(load_corpus(tmp / "six.bin", TextEncoder{}, o), "six.bin", "not a multiple of 4",
                    "uint32");
  }

  // ---- cache

  void cache_hit_and_miss() {
    TempDir tmp;
    write_file(tmp / "a.txt", "cached text\n");
    const TokenCorpus first = load_corpus(tmp / "a.txt", byte_encoder(kEos), opts());
    QCOMPARE(first.cache_outcome(), CacheOutcome::Built);
    QVERIFY(std::filesystem::exists(first.cache_file()));
    QVERIFY(first.cache_file().parent_path().parent_path() == cache_->path());
    const TokenCorpus second = load_corpus(tmp / "a.txt", byte_encoder(kEos), opts());
    QVERIFY(second.cache_hit());
    QCOMPARE(all_ids(second), all_ids(first));
    QCOMPARE(second.documents(), int64_t(1));
    QCOMPARE(second.cache_file(), first.cache_file());

    // Anything that changes the ids changes the key.
    QVERIFY(!load_corpus(tmp / "a.txt", byte_encoder(), opts()).cache_hit());  // no EOS
    TextEncoder other = byte_encoder(kEos);
    other.fingerprint = "other tokenizer";
    QVERIFY(!load_corpus(tmp / "a.txt", other, opts()).cache_hit());
    write_file(tmp / "a.txt", "changed text, longer\n");
    const TokenCorpus changed = load_corpus(tmp / "a.txt", byte_encoder(kEos), opts());
    QCOMPARE(changed.cache_outcome(), CacheOutcome::Built);
    QCOMPARE(all_ids(changed), concat({bytes_of("changed text, longer\n"), {kEos}}));
    QVERIFY(load_corpus(tmp / "a.txt", byte_encoder(kEos), opts()).cache_hit());
  }

  void damaged_cache_is_rebuilt() {
    TempDir tmp;
    write_file(tmp / "a.txt", "some words to cache\n");
    const TokenCorpus built = load_corpus(tmp / "a.txt", byte_encoder(), opts());
    const std::vector<int32_t> expected = all_ids(built);
    const std::filesystem::path file = built.cache_file();
    const std::string good = read_file(file);

    std::string flipped = good;
    flipped[flipped.size() - 3] ^= 0x01;  // one id changed: the checksum notices
    const std::vector<std::string> damaged = {flipped, good.substr(0, good.size() - 4), good.substr(0, 50),
                                              "", "XX" + good.substr(2)};
    for (const std::string& bytes : damaged) {
      std::filesystem::remove(file);
      write_file(file, bytes);
      const TokenCorpus c = load_corpus(tmp / "a.txt", byte_encoder(), opts());
      QCOMPARE(c.cache_outcome(), CacheOutcome::Built);
      QCOMPARE(all_ids(c), expected);
      QCOMPARE(read_file(file), good);
    }
  }

  void unwritable_cache_only_warns() {
    TempDir tmp;
    write_file(tmp / "a.txt", "abc");
    write_file(tmp / "not-a-folder", "");
    CorpusOptions o;
    o.cache_dir = tmp / "not-a-folder";
    const TokenCorpus c = load_corpus(tmp / "a.txt", byte_encoder(), o);
    QCOMPARE(c.cache_outcome(), CacheOutcome::Unwritable);
    QCOMPARE(all_ids(c), bytes_of("abc"));
    QVERIFY(c.cache_file().empty());
    o.use_cache = false;
    QCOMPARE(load_corpus(tmp / "a.txt", byte_encoder(), o).cache_outcome(), CacheOutcome::NotUsed);
  }

  void cache_dir_resolution() {
    CorpusOptions o;
    o.cache_dir = "/explicit";
    QCOMPARE(resolve_cache_dir(o), std::filesystem::path("/explicit"));
    o.cache_dir.clear();
    const auto saved = [](const char* name) {
      return std::getenv(name) ? std::string(std::getenv(name)) : "";
    };
    const std::string env_cache = saved("HEDGELAB_CACHE_DIR"), env_xdg = saved("XDG_CACHE_HOME"),
                      env_home = saved("HOME");
    ::setenv("HEDGELAB_CACHE_DIR", "/from-env", 1);
    QCOMPARE(resolve_cache_dir(o), std::filesystem::path("/from-env"));
    ::unsetenv("HEDGELAB_CACHE_DIR");
    ::setenv("XDG_CACHE_HOME", "/xdg", 1);
    QCOMPARE(resolve_cache_dir(o), std::filesystem::path("/xdg/hedgelab"));
    ::unsetenv("XDG_CACHE_HOME");
    ::setenv("HOME", "/home/someone", 1);
    QCOMPARE(resolve_cache_dir(o), std::filesystem::path("/home/someone/.cache/hedgelab"));
    for (const auto& [name, value] : {std::pair<const char*, std::string>{"HEDGELAB_CACHE_DIR", env_cache},
                                      {"XDG_CACHE_HOME", env_xdg},
                                      {"HOME", env_home}}) {
      if (!value.empty()) ::setenv(name, value.c_str(), 1);
    }
  }

  // ---- split

  void small_corpus_still_has_train_and_heldout_parts() {
    // 100 tokens with 64K blocks and k = 20: blocks shrink to ceil(100 / 40) = 3 tokens.
    const auto split = split_ranges(100, 65536, 0.05);
    int64_t heldout = 0, train = 0;
    for (const auto& r : split.heldout)
      heldout += r.size();
    for (const auto& r : split.train)
      train += r.size();
    QCOMPARE(heldout, int64_t(6));  // blocks 0 and 20
    QCOMPARE(train, int64_t(94));
    // A corpus of at least 2k full blocks keeps the configured block size.
    const auto big = split_ranges(40 * 10, 10, 0.05);
    QCOMPARE(big.heldout.front().size(), int64_t(10));
  }

  void split_is_disjoint_complete_and_deterministic() {
    for (const int64_t n : {1, 63, 64, 65, 1000, 1280, 5000}) {
      const SplitRanges s = split_ranges(n, 64, 0.25);  // k = 4: blocks 0, 4, 8, … held out
      std::vector<int> owner(static_cast<std::size_t>(n), 0);
      for (const auto* list : {&s.train, &s.heldout}) {
        for (const TokenRange& r : *list) {
          QVERIFY(r.begin < r.end);
          for (int64_t i = r.begin; i < r.end; ++i)
            ++owner[static_cast<std::size_t>(i)];
        }
      }
      QVERIFY(std::all_of(owner.begin(), owner.end(), [](int o) { return o == 1; }));
      for (const TokenRange& r : s.heldout) {
        QCOMPARE((r.begin / 64) % 4, int64_t(0));
        QVERIFY(r.size() <= 64);
      }
      QVERIFY(!s.heldout.empty());
      const SplitRanges again = split_ranges(n, 64, 0.25);
      QVERIFY(again.train == s.train && again.heldout == s.heldout);
    }
    const SplitRanges s = split_ranges(1000, 64, 0.25);
    QCOMPARE(s.heldout.front(), (TokenRange{0, 64}));
    QCOMPARE(s.train.front(), (TokenRange{64, 256}));  // blocks 1–3 merge into one range
    QCOMPARE(s.heldout[1], (TokenRange{256, 320}));
    QCOMPARE(heldout_period(0.05), int64_t(20));
    QCOMPARE(heldout_period(0.3), int64_t(3));
    QVERIFY(split_ranges(100, 10, 0.0).heldout.empty());
    HL_EXPECT_ERROR(split_ranges(100, 10, 0.7), "heldout_fraction", "[0, 0.5]");
    HL_EXPECT_ERROR(split_ranges(100, 0, 0.1), "split_block_tokens");
  }

  void corpus_views() {
    TempDir tmp;
    CorpusOptions o = opts();
    o.split_block_tokens = 10;
    o.heldout_fraction = 0.2;  // k = 5
    const TokenCorpus c = sequence_corpus(tmp, 123, o);
    const TokenView train = c.train(), held = c.heldout();
    QCOMPARE(train.size() + held.size(), c.size());
    QCOMPARE(held.size(), int64_t(30));  // blocks 0, 5, 10
    QCOMPARE(held[0], int32_t(0));
    QCOMPARE(held[10], int32_t(50));
    QCOMPARE(train[0], int32_t(10));
    QCOMPARE(train[40], int32_t(60));
    QCOMPARE(train.stream_position(40), int64_t(60));
    std::vector<int64_t> got(25);
    train.copy_to(35, 25, got.data());  // crosses the held-out block 50..59
    for (int i = 0; i < 25; ++i)
      QCOMPARE(got[i], int64_t(i < 5 ? 45 + i : 55 + i));
    HL_EXPECT_ERROR(train.copy_to(90, 10, got.data()), "train split", "outside the view");
    HL_EXPECT_ERROR(held.require_tokens(31, "one batch"), "seq.bin (held-out split)", "has 30 tokens",
                    "31 needed for one batch");
    c.require_tokens(123, "all");
  }

  // ---- batch cursor

  void cursor_batches_are_windows_of_the_view() {
    TempDir tmp;
    CorpusOptions o = opts();
    o.split_block_tokens = 40;
    o.heldout_fraction = 0.25;
    const TokenCorpus c = sequence_corpus(tmp, 1000, o);
    const TokenView train = c.train();
    const int64_t T = 8;
    BatchCursor cursor(train, T, 4, 7);
    // Train ranges are 3 blocks = 120 tokens (the last shorter): (120 - 1) / 8 = 14 windows each.
    int64_t expected_windows = 0;
    for (const TokenRange& r : train.ranges())
      expected_windows += (r.size() - 1) / T;
    QCOMPARE(cursor.windows_per_epoch(), expected_windows);
    for (int step = 0; step < 20; ++step) {
      const at::Tensor b = cursor.next();
      QCOMPARE(b.sizes(), (at::IntArrayRef{4, T + 1}));
      QCOMPARE(b.scalar_type(), at::kLong);
      for (int64_t r = 0; r < 4; ++r) {
        const auto w = row(b, r);
        // Consecutive stream ids: the window lies inside one range (sequence_corpus stores i at position i).
        for (int64_t j = 1; j <= T; ++j)
          QCOMPARE(w[j], w[0] + j);
        QVERIFY((w[0] / 40) % 4 != 0);  // never in a held-out block
      }
    }
  }

  void cursor_is_deterministic_and_seeded() {
    TempDir tmp;
    const TokenCorpus c = sequence_corpus(tmp, 2000, opts());
    BatchCursor a(c.all(), 16, 3, 42), b(c.all(), 16, 3, 42), other(c.all(), 16, 3, 43);
    bool differs = false;
    for (int i = 0; i < 10; ++i) {
      const at::Tensor x = a.next();
      QVERIFY(at::equal(x, b.next()));
      differs = differs || !at::equal(x, other.next());
    }
    QVERIFY(differs);
    // The first epoch's order is pinned: the same on every machine and standard library.
    BatchCursor pinned(c.all(), 16, 3, 42);
    const std::vector<int64_t> order = pinned.epoch_order();
    QCOMPARE(static_cast<int64_t>(order.size()), int64_t(1999 / 16));
    std::vector<int64_t> sorted = order;
    std::sort(sorted.begin(), sorted.end());
    for (std::size_t i = 0; i < sorted.size(); ++i)
      QCOMPARE(sorted[i], int64_t(16 * i));
    QVERIFY(order != sorted);
    // Values from an independent re-implementation (xoshiro256** seeded by SplitMix64, Lemire's bounded
    // draw, Fisher–Yates from the back) of the documented algorithm.
    QCOMPARE(std::vector<int64_t>(order.begin(), order.begin() + 10),
             (std::vector<int64_t>{1408, 272, 1712, 416, 512, 1072, 1440, 240, 1168, 752}));
    pinned.restore(CursorState{42, 1, 0});
    QCOMPARE(std::vector<int64_t>(pinned.epoch_order().begin(), pinned.epoch_order().begin() + 10),
             (std::vector<int64_t>{1904, 1328, 1488, 928, 192, 752, 240, 1552, 176, 784}));
  }

  void cursor_save_restore_continues_exactly() {
    TempDir tmp;
    const TokenCorpus c = sequence_corpus(tmp, 700, opts());
    BatchCursor never_stopped(c.all(), 10, 4, 1234);
    for (int i = 0; i < 23; ++i)
      never_stopped.next();  // past an epoch boundary (69 windows)
    const nlohmann::json saved = never_stopped.state();
    QCOMPARE(never_stopped.state().epoch, int64_t(1));

    BatchCursor resumed(c.all(), 10, 4, 999);  // seed comes from the state
    resumed.restore(saved.get<CursorState>());
    QCOMPARE(resumed.state(), never_stopped.state());
    for (int i = 0; i < 40; ++i)
      QVERIFY(at::equal(resumed.next(), never_stopped.next()));

    const nlohmann::json text = nlohmann::json::parse(saved.dump());
    QCOMPARE(text.get<CursorState>(), saved.get<CursorState>());
    HL_EXPECT_ERROR(nlohmann::json::parse("{\"seed\": 1, \"epoch\": -1, \"index\": 0}").get<CursorState>(),
                    "cursor state: epoch", "non-negative integer");
    HL_EXPECT_ERROR(nlohmann::json::parse("{\"seed\": 1, \"epoch\": 0}").get<CursorState>(), "index");
    HL_EXPECT_ERROR(resumed.restore(CursorState{1, 0, 69}), "cursor state", "69 windows");
  }

  void cursor_epochs_visit_every_window_once() {
    TempDir tmp;
    const TokenCorpus c = sequence_corpus(tmp, 221, opts());  // 22 windows of T+1 = 11
    BatchCursor cursor(c.all(), 10, 5, 3);
    QCOMPARE(cursor.windows_per_epoch(), int64_t(22));
    const std::vector<int64_t> epoch0 = cursor.epoch_order();
    std::vector<int64_t> seen;
    for (int i = 0; i < 4; ++i) {  // 20 windows
      const at::Tensor b = cursor.next();
      for (int64_t r = 0; r < 5; ++r)
        seen.push_back(row(b, r)[0]);
    }
    QCOMPARE(cursor.state().epoch, int64_t(0));
    QCOMPARE(cursor.state().index, int64_t(20));
    const at::Tensor straddling = cursor.next();  // 2 windows of epoch 0, then 3 of epoch 1
    QCOMPARE(cursor.state().epoch, int64_t(1));
    QCOMPARE(cursor.state().index, int64_t(3));
    for (int64_t r = 0; r < 2; ++r)
      seen.push_back(row(straddling, r)[0]);
    QCOMPARE(seen, epoch0);
    std::set<int64_t> distinct(seen.begin(), seen.end());
    QCOMPARE(distinct.size(), std::size_t(22));
    const std::vector<int64_t> epoch1 = cursor.epoch_order();
    QVERIFY(epoch1 != epoch0);
    QCOMPARE(std::set<int64_t>(epoch1.begin(), epoch1.end()), distinct);
    for (int64_t r = 2; r < 5; ++r)
      QCOMPARE(row(straddling, r)[0], epoch1[static_cast<std::size_t>(r - 2)]);
  }

  void cursor_needs_one_window() {
    TempDir tmp;
    const TokenCorpus c = sequence_corpus(tmp, 10, opts());
    HL_EXPECT_ERROR(BatchCursor(c.all(), 10, 1, 0), "seq.bin", "has 10 tokens", "one window of T+1 = 11");
    BatchCursor ok(c.all(), 9, 2, 0);  // exactly one window, repeated to fill the batch
    const at::Tensor b = ok.next();
    QVERIFY(at::equal(b[0], b[1]));
    CorpusOptions o = opts();
    o.split_block_tokens = 8;
    o.heldout_fraction = 0.5;
    const TokenCorpus split = sequence_corpus(tmp, 100, o);
    HL_EXPECT_ERROR(BatchCursor(split.train(), 8, 1, 0), "train split", "raise split_block_tokens");
    HL_EXPECT_ERROR(BatchCursor(c.all(), 0, 1, 0), "seq_len");
  }

  // ---- evaluation windows

  void eval_window_starts_follow_the_protocol() {
    const int64_t T = 4, k = 3;
    QCOMPARE(eval_window_starts(k * T + 1, T), (std::vector<int64_t>{0, 4, 8}));
    QCOMPARE(eval_window_starts(k * T, T), (std::vector<int64_t>{0, 4}));
    QCOMPARE(eval_window_starts(k * T + 2, T), (std::vector<int64_t>{0, 4, 8}));
    QVERIFY(eval_window_starts(T, T).empty());
    QCOMPARE(eval_window_starts(T + 1, T), (std::vector<int64_t>{0}));
  }

  void eval_batches_cover_the_view() {
    TempDir tmp;
    CorpusOptions o = opts();
    o.split_block_tokens = 10;
    o.heldout_fraction = 0.25;
    const TokenCorpus c = sequence_corpus(tmp, 200, o);
    const TokenView held = c.heldout();  // blocks 0, 4, 8, 12, 16: 50 tokens
    QCOMPARE(held.size(), int64_t(50));
    const auto batches = eval_batches(held, 6, 3);  // (50 - 1) / 6 = 8 windows: 3 + 3 + 2
    QCOMPARE(batches.size(), std::size_t(3));
    QCOMPARE(batches[2].sizes(), (at::IntArrayRef{2, 7}));
    const auto w = row(batches[0], 1);  // view positions 6..12: stream 6..9 then 40..42
    QCOMPARE(w, (std::vector<int64_t>{6, 7, 8, 9, 40, 41, 42}));
    QCOMPARE(row(batches[1], 0)[0], int64_t(held[18]));
    const at::Tensor inputs = batches[0].slice(1, 0, -1), targets = batches[0].slice(1, 1);  // [b, T] each
    QVERIFY(at::equal(inputs.slice(1, 1), targets.slice(1, 0, -1)));
    const auto capped = eval_batches(held, 6, 3, 4);
    QCOMPARE(capped.size(), std::size_t(2));
    QCOMPARE(capped[1].size(0), int64_t(1));
    HL_EXPECT_ERROR(eval_batches(held, 50, 3), "held-out split", "has 50 tokens", "51 needed");
  }

  // ---- default corpus

  void default_corpus_path_lookup() {
    TempDir tmp;
    write_file(tmp / "kjv.txt", "In the beginning\n");
    ::setenv("HEDGELAB_DATA_DIR", tmp.path().c_str(), 1);
    QCOMPARE(default_corpus_path(), tmp / "kjv.txt");
    ::unsetenv("HEDGELAB_DATA_DIR");
    try {
      const auto p = default_corpus_path();
      QVERIFY(std::filesystem::is_regular_file(p));
      // The extracted KJV (scripts/extract-kjv.sh) reads as one document with references stripped.
      const TokenCorpus kjv = load_corpus(p, byte_encoder(), opts());
      const std::string start = "In the beginning God created the heaven and the earth.\nAnd the earth";
      std::vector<int64_t> head(start.size());
      kjv.all().copy_to(0, static_cast<int64_t>(head.size()), head.data());
      QCOMPARE(std::string(head.begin(), head.end()), start);
    } catch (const hedgelab::Error& e) {
      QVERIFY(std::string(e.what()).find("scripts/extract-kjv.sh") != std::string::npos);
      QVERIFY(std::string(e.what()).find('\n') == std::string::npos);
    }
  }
};

QTEST_APPLESS_MAIN(TestCorpus)
#include "test_corpus.moc"
