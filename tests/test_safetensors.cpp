// safetensors: our writer and reader round-trip every dtype, the reader reads a file assembled byte by byte
// (so it is checked independently of the writer), every header inconsistency is refused with the file and
// the problem named, random corruption never crashes, and writes are atomic.
#include <QTest>

#include <ATen/ATen.h>

#include <cstring>
#include <random>

#include "core/io/safetensors.h"
#include "core/io/safetensors_torch.h"
#include "tests/test_util.h"

using hedgelab::io::DType;
using hedgelab::io::SafetensorsFile;
using hedgelab::testing::read_file;
using hedgelab::testing::TempDir;
using hedgelab::testing::write_file;

namespace {

std::string u64_le(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i)
    s[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

// A whole file: length prefix, header text as given, data bytes.
std::string assemble(const std::string& header, const std::string& data) {
  return u64_le(header.size()) + header + data;
}

template <typename T>
std::string bytes_of(std::initializer_list<T> values) {
  std::string s;
  for (T v : values) {
    char b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));  // the host is little-endian, as the format
    s.append(b, sizeof(T));
  }
  return s;
}

std::string u16_le(std::initializer_list<uint16_t> values) {
  return bytes_of<uint16_t>(values);
}

// One F32 tensor "w" of shape [2, 2] with the given header fields, 16 bytes of data.
std::string entry(const std::string& name, const std::string& dtype, const std::string& shape,
                  const std::string& offsets) {
  return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":" + offsets +
         "}";
}

std::vector<std::string> dir_entries(const std::filesystem::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace

class TestSafetensors : public QObject {
  Q_OBJECT

  // Writes `bytes` as bad.safetensors and expects open() to fail naming the file and `fragment`.
  void expect_refused(const std::string& bytes, const char* fragment, const char* fragment2 = "",
                      const char* fragment3 = "") {
    TempDir tmp;
    const auto path = tmp / "bad.safetensors";
    write_file(path, bytes);
    HL_EXPECT_ERROR(SafetensorsFile::open(path), "bad.safetensors", fragment, fragment2, fragment3);
  }

 private Q_SLOTS:
  void dtype_helpers() {
    for (DType d : {DType::F64, DType::F32, DType::F16, DType::BF16, DType::I64, DType::I32, DType::I16,
                    DType::I8, DType::U8, DType::BOOL, DType::F8_E4M3, DType::F8_E5M2}) {
      QCOMPARE(*hedgelab::io::dtype_from_name(hedgelab::io::dtype_name(d)), d);
    }
    QCOMPARE(hedgelab::io::dtype_itemsize(DType::BF16), std::size_t{2});
    QCOMPARE(hedgelab::io::dtype_itemsize(DType::F64), std::size_t{8});
    QCOMPARE(hedgelab::io::dtype_itemsize(DType::BOOL), std::size_t{1});
    QVERIFY(!hedgelab::io::dtype_from_name("f32"));
    QVERIFY(!hedgelab::io::dtype_loadable(DType::F8_E4M3));
    QVERIFY(hedgelab::io::dtype_loadable(DType::BF16));
  }

  void round_trip_every_dtype() {
    TempDir tmp;
    at::manual_seed(7);
    const at::Tensor x = at::randn({3, 5}) * 100;
    const at::Tensor f32 = x.clone();
    const at::Tensor f16 = x.to(at::kHalf);
    const at::Tensor bf16 = x.to(at::kBFloat16);
    const at::Tensor f64 = at::randn({4}, at::kDouble);
    const at::Tensor i64 = at::tensor({int64_t{-1}, int64_t{0}, int64_t{1} << 62, -(int64_t{1} << 62) - 5});
    const at::Tensor i32 = at::randint(-1000000, 1000000, {2, 2, 2}, at::kInt);
    const at::Tensor i16 = at::randint(-30000, 30000, {6}, at::kShort);
    const at::Tensor i8 = at::randint(-128, 127, {5}, at::kChar);
    const at::Tensor u8 = at::randint(0, 255, {5}, at::kByte);
    const at::Tensor flags = at::tensor({1, 0, 1}).to(at::kBool);  // at::tensor(bool list) fails in 1.13
    const at::Tensor scalar = at::tensor(3.5f).reshape({});
    const at::Tensor empty = at::zeros({0, 3});
    const at::Tensor strided = at::arange(12, at::kFloat).reshape({3, 4}).t();  // not contiguous
    const std::vector<std::pair<std::string, at::Tensor>> named = {
        {"z.f32", f32},     {"a.f16", f16},   {"m.bf16", bf16},    {"f64", f64}, {"i64", i64},
        {"i32", i32},       {"i16", i16},     {"i8", i8},          {"u8", u8},   {"flags", flags},
        {"scalar", scalar}, {"empty", empty}, {"strided", strided}};
    const auto path = tmp / "model.safetensors";
    hedgelab::io::save_safetensors(path, named, {{"note", "round trip"}});

    const auto file = SafetensorsFile::open(path);
    QCOMPARE(file.tensors().size(), named.size());
    QCOMPARE(file.metadata().at("note"), std::string("round trip"));
    QCOMPARE(file.metadata().at("format"), std::string("pt"));
    for (const auto& [name, t] : named) {
      const auto* info = file.find(name);
      QVERIFY2(info, name.c_str());
      QCOMPARE(info->dtype, hedgelab::io::dtype_of(t.scalar_type(), name));
      QCOMPARE(info->shape, t.sizes().vec());
      const at::Tensor back = hedgelab::io::read_tensor(file, *info, t.scalar_type());
      QCOMPARE(back.scalar_type(), t.scalar_type());
      QVERIFY2(at::equal(back, t), name.c_str());
    }
    // Conversions to float32 match torch's own conversion of the stored values.
    QVERIFY(at::equal(hedgelab::io::read_tensor(file, *file.find("a.f16")), x.to(at::kHalf).to(at::kFloat)));
    QVERIFY(
        at::equal(hedgelab::io::read_tensor(file, *file.find("m.bf16")), x.to(at::kBFloat16).to(at::kFloat)));
    QVERIFY(at::equal(hedgelab::io::read_tensor(file, *file.find("i64"), at::kLong), i64));
    QVERIFY(!file.find("absent"));

    // The data area holds the tensors in name order.
    uint64_t previous_end = 0;
    for (const auto& info : file.tensors()) {  // tensors() is name-sorted
      QCOMPARE(info.begin, previous_end);
      previous_end = info.end;
    }
    QCOMPARE(previous_end, file.data_size());
  }

  void read_copies_out_of_the_mapping() {
    TempDir tmp;
    const auto path = tmp / "w.safetensors";
    hedgelab::io::save_safetensors(path, {{"w", at::arange(6, at::kFloat)}});
    at::Tensor t;
    {
      const auto file = SafetensorsFile::open(path);
      t = hedgelab::io::read_tensor(file, file.tensors().front());
      t.add_(1);  // must not write into a read-only mapping
    }             // unmapped here; t must still be valid
    QVERIFY(at::equal(t, at::arange(6, at::kFloat) + 1));
    const auto again = SafetensorsFile::open(path);
    QVERIFY(at::equal(hedgelab::io::read_tensor(again, again.tensors().front()), at::arange(6, at::kFloat)));
  }

  void header_is_padded_to_eight_bytes() {
    TempDir tmp;
    for (int len = 1; len <= 9; ++len) {  // names of each length move the JSON end through every residue
      const auto path = tmp / "pad.safetensors";
      hedgelab::io::save_safetensors(path, {{std::string(len, 'n'), at::ones({3}, at::kHalf)}}, {});
      const std::string bytes = read_file(path);
      uint64_t n = 0;
      for (int i = 7; i >= 0; --i)
        n = (n << 8) | static_cast<unsigned char>(bytes[i]);
      QCOMPARE(n % 8, uint64_t{0});
      QCOMPARE(bytes.size(), 8 + n + 6);
      const std::string header = bytes.substr(8, n);
      const auto close = header.find_last_of('}');
      QVERIFY(close != std::string::npos);
      QCOMPARE(header.substr(close + 1), std::string(n - close - 1, ' '));
      QVERIFY(n - close - 1 < 8);
      const auto file = SafetensorsFile::open(path);
      QCOMPARE(file.header_size(), n);
    }
  }

  void reads_a_hand_assembled_file() {
    // Offsets written by hand, entries out of order, unaligned header length, metadata, trailing spaces.
    const std::string header =
        "{" + entry("b", "I32", "[3]", "[8, 20]") + "," + entry("a", "F32", "[2]", "[0, 8]") + "," +
        entry("h", "F16", "[2]", "[20, 24]") + "," + entry("g", "BF16", "[2,1]", "[24, 28]") + "," +
        entry("k", "BOOL", "[2]", "[28, 30]") + "," + entry("e", "I64", "[0]", "[30, 30]") +
        ",\"__metadata__\":{\"format\":\"pt\",\"who\":\"hand\"}}   ";
    const std::string data = bytes_of<float>({1.5f, -2.25f}) + bytes_of<int32_t>({7, -8, 2147483647}) +
                             u16_le({0x3C00, 0x7BFF}) /* 1.0, 65504 */ +
                             u16_le({0x3F80, 0xC000}) /* 1, -2 */ +
                             std::string("\x00\x05", 2);  // any non-zero byte is true
    TempDir tmp;
    const auto path = tmp / "hand.safetensors";
    write_file(path, assemble(header, data));
    const auto file = SafetensorsFile::open(path);
    QCOMPARE(file.path(), path);
    QCOMPARE(file.tensors().size(), std::size_t{6});
    QCOMPARE(file.tensors().front().name, std::string("a"));
    QCOMPARE(file.metadata().at("who"), std::string("hand"));
    QCOMPARE(file.data_size(), uint64_t{30});
    const auto& b = *file.find("b");
    QCOMPARE(b.dtype, DType::I32);
    QCOMPARE(b.begin, uint64_t{8});
    QCOMPARE(b.end, uint64_t{20});
    QVERIFY(std::memcmp(file.data(b), data.data() + 8, 12) == 0);

    using hedgelab::io::read_tensor;
    QVERIFY(at::equal(read_tensor(file, *file.find("a")), at::tensor({1.5f, -2.25f})));
    QVERIFY(at::equal(read_tensor(file, b, at::kInt), at::tensor({7, -8, 2147483647}, at::kInt)));
    QVERIFY(at::equal(read_tensor(file, *file.find("h")), at::tensor({1.0f, 65504.0f})));
    QVERIFY(at::equal(read_tensor(file, *file.find("g")), at::tensor({1.0f, -2.0f}).reshape({2, 1})));
    QVERIFY(at::equal(read_tensor(file, *file.find("k"), at::kBool), at::tensor({0, 1}).to(at::kBool)));
    QCOMPARE(read_tensor(file, *file.find("e")).numel(), int64_t{0});
  }

  void empty_header_is_valid() {
    TempDir tmp;
    const auto path = tmp / "none.safetensors";
    write_file(path, assemble("{}", ""));
    QCOMPARE(SafetensorsFile::open(path).tensors().size(), std::size_t{0});
  }

  void f8_opens_but_is_not_loaded() {
    TempDir tmp;
    const auto path = tmp / "f8.safetensors";
    write_file(path, assemble("{" + entry("q", "F8_E4M3", "[2]", "[0,2]") + "}", "ab"));
    const auto file = SafetensorsFile::open(path);
    HL_EXPECT_ERROR(hedgelab::io::read_tensor(file, *file.find("q")), "f8.safetensors", "\"q\"", "F8_E4M3",
                    "not supported");
  }

  void refuses_bad_files() {
    const std::string ok_data(16, '\0');
    const auto one = [](const std::string& e) { return "{" + e + "}"; };
    // Sizes and lengths.
    expect_refused("", "0 bytes", "at least 8");
    expect_refused(std::string("\x02\x00\x00", 3), "3 bytes", "at least 8");
    expect_refused(u64_le(200'000'000) + "{}", "header length 200000000", "exceeds the limit");
    expect_refused(u64_le(~uint64_t{0}) + "{}", "exceeds the limit");
    expect_refused(u64_le(40) + "{}", "header length 40", "the file has 10");
    // JSON itself.
    expect_refused(assemble("{\"w\": ", ""), "not valid JSON");
    expect_refused(assemble("not json", ""), "not valid JSON");
    expect_refused(assemble("{\"a\":\"\xff\xfe\"}", ""), "not valid JSON");  // not UTF-8
    expect_refused(assemble("[1, 2]", ""), "must be a JSON object", "array");
    expect_refused(assemble("{\"a\":[[[[[[[[[[[[1]]]]]]]]]]]]}", ""), "nested deeper than 8");
    expect_refused(assemble(std::string(100000, '[') + std::string(100000, ']'), ""), "nested deeper");
    expect_refused(assemble("{" + entry("w", "F32", "[2,2]", "[0,16]") + "," +
                                entry("w", "F32", "[2,2]", "[0,16]") + "}",
                            ok_data),
                   "duplicate key \"w\"");
    // Entries.
    expect_refused(assemble(one(entry("w", "Q4", "[2,2]", "[0,16]")), ok_data), "tensor \"w\"",
                   "unknown dtype \"Q4\"");
    expect_refused(assemble("{\"w\":{\"dtype\":4,\"shape\":[4],\"data_offsets\":[0,16]}}", ok_data),
                   "tensor \"w\"", "dtype must be a string");
    expect_refused(assemble("{\"w\":[1]}", ok_data), "tensor \"w\"", "entry must be an object");
    expect_refused(assemble("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,16]}}", ok_data), "tensor \"w\"",
                   "missing \"shape\"");
    expect_refused(assemble(one(entry("w", "F32", "[-2,-2]", "[0,16]")), ok_data), "tensor \"w\"",
                   "shape must be an array of non-negative integers");
    expect_refused(assemble(one(entry("w", "F32", "[2.0,2]", "[0,16]")), ok_data), "tensor \"w\"",
                   "non-negative integers");
    expect_refused(assemble(one(entry("w", "F32", "\"2x2\"", "[0,16]")), ok_data), "tensor \"w\"",
                   "shape must be an array", "string");
    expect_refused(assemble(one(entry("w", "F32", "[4294967296,4294967296,4]", "[0,16]")), ok_data),
                   "tensor \"w\"", "overflows");
    expect_refused(assemble(one(entry("w", "F32", "[2,2]", "[0,12]")), std::string(12, '\0')), "tensor \"w\"",
                   "span 12 bytes, expected 16");
    expect_refused(assemble(one(entry("w", "F32", "[2,2]", "[16,0]")), ok_data), "tensor \"w\"",
                   "begin > end");
    expect_refused(assemble(one(entry("w", "F32", "[2,2]", "[0]")), ok_data), "tensor \"w\"",
                   "data_offsets must be [begin, end]");
    expect_refused(assemble(one(entry("w", "F32", "[2,2]", "[-4,12]")), ok_data), "tensor \"w\"",
                   "non-negative integers");
    expect_refused(assemble(one(entry("w", "F32", "[2,2]", "\"0-16\"")), ok_data), "tensor \"w\"",
                   "data_offsets must be");
    expect_refused(assemble("{\"__metadata__\":[1]}", ""), "__metadata__", "expected an object");
    expect_refused(assemble("{\"__metadata__\":{\"k\":1}}", ""), "__metadata__.k", "expected a string");
    // Spans against the data area.
    expect_refused(assemble(one(entry("w", "F32", "[2,2]", "[0,16]")), std::string(12, '\0')), "tensor \"w\"",
                   "end past the data area (12 bytes");
    expect_refused(assemble(one(entry("w", "F32", "[2,2]", "[0,16]")), std::string(20, '\0')),
                   "4 trailing bytes");
    expect_refused(assemble(one(entry("w", "F32", "[2,2]", "[4,20]")), std::string(20, '\0')), "tensor \"w\"",
                   "gap of 4 bytes");
    expect_refused(
        assemble("{" + entry("a", "F32", "[2]", "[0,8]") + "," + entry("b", "F32", "[2]", "[12,20]") + "}",
                 std::string(20, '\0')),
        "tensor \"b\"", "gap of 4 bytes after offset 8");
    expect_refused(
        assemble("{" + entry("a", "F32", "[3]", "[0,12]") + "," + entry("b", "F32", "[2]", "[8,16]") + "}",
                 std::string(16, '\0')),
        "tensor \"b\"", "overlap tensor \"a\"");
    expect_refused(
        assemble("{" + entry("a", "F32", "[2]", "[0,8]") + "," + entry("b", "F32", "[2]", "[0,8]") + "}",
                 std::string(8, '\0')),
        "overlap");
    expect_refused(assemble("{}", "xyz"), "3 trailing bytes");
    // A name with control characters stays on one line.
    expect_refused(assemble("{\"w\\n\\u0001\":{\"dtype\":\"X\",\"shape\":[],\"data_offsets\":[0,0]}}", ""),
                   "tensor \"w\\n\\u0001\"", "unknown dtype");
  }

  void refuses_missing_and_non_files() {
    TempDir tmp;
    HL_EXPECT_ERROR(SafetensorsFile::open(tmp / "nope.safetensors"), "nope.safetensors", "no such file");
    const std::string dir = tmp.path().string();
    HL_EXPECT_ERROR(SafetensorsFile::open(tmp.path()), dir.c_str(), "is a directory");
  }

  void random_corruption_never_crashes() {
    TempDir tmp;
    const auto good_path = tmp / "good.safetensors";
    hedgelab::io::save_safetensors(good_path, {{"a", at::arange(4, at::kFloat)},
                                               {"b", at::arange(3, at::kLong)},
                                               {"c", at::ones({2, 2}, at::kHalf)}});
    const std::string good = read_file(good_path);
    const auto path = tmp / "fuzz.safetensors";
    std::mt19937 rng(12345);
    int opened = 0, refused = 0;
    for (int trial = 0; trial < 500; ++trial) {
      std::string bytes = good;
      const int kind = trial % 4;
      if (kind == 0) {  // truncate anywhere
        bytes.resize(std::uniform_int_distribution<std::size_t>(0, bytes.size())(rng));
      } else if (kind == 1) {  // corrupt the length prefix
        bytes[std::uniform_int_distribution<int>(0, 7)(rng)] = static_cast<char>(rng());
      } else {  // flip 1..4 bytes anywhere
        const int flips = std::uniform_int_distribution<int>(1, 4)(rng);
        for (int i = 0; i < flips; ++i) {
          const auto at = std::uniform_int_distribution<std::size_t>(0, bytes.size() - 1)(rng);
          bytes[at] =
              kind == 2 ? static_cast<char>(bytes[at] ^ (1 << (rng() % 8))) : static_cast<char>(rng());
        }
      }
      write_file(path, bytes);
      try {
        const auto file = SafetensorsFile::open(path);
        for (const auto& info : file.tensors()) {
          try {
            (void)hedgelab::io::read_tensor(file, info);
          } catch (const hedgelab::Error&) {  // e.g. a flip produced "F8_E4M3"
          }
        }
        ++opened;
      } catch (const hedgelab::Error& e) {
        QVERIFY(std::string(e.what()).find('\n') == std::string::npos);
        ++refused;
      }
    }
    QCOMPARE(opened + refused, 500);
    QVERIFY(refused > 100);
  }

  void write_is_atomic_and_leaves_nothing_behind() {
    TempDir tmp;
    const auto path = tmp / "model.safetensors";
    hedgelab::io::save_safetensors(path, {{"w", at::ones({4})}});
    hedgelab::io::save_safetensors(path, {{"w", at::zeros({8})}});  // replaces the old file
    QCOMPARE(dir_entries(tmp.path()), std::vector<std::string>{"model.safetensors"});
    const std::string before = read_file(path);
    {
      const auto file = SafetensorsFile::open(path);
      QCOMPARE(file.find("w")->shape, std::vector<int64_t>{8});
    }
    // A failed save (undefined tensor, duplicate or reserved name, unsupported dtype) keeps the old file.
    HL_EXPECT_ERROR(hedgelab::io::save_safetensors(path, {{"a", at::ones({2})}, {"b", at::Tensor()}}),
                    "model.safetensors", "tensor \"b\"", "undefined");
    HL_EXPECT_ERROR(hedgelab::io::save_safetensors(path, {{"a", at::ones({2})}, {"a", at::ones({2})}}),
                    "model.safetensors", "tensor \"a\"", "given twice");
    HL_EXPECT_ERROR(hedgelab::io::save_safetensors(path, {{"__metadata__", at::ones({2})}}), "reserved");
    HL_EXPECT_ERROR(hedgelab::io::save_safetensors(path, {{"c", at::ones({2}, at::kComplexFloat)}}),
                    "tensor \"c\"", "cannot be stored");
    QCOMPARE(read_file(path), before);
    QCOMPARE(dir_entries(tmp.path()), std::vector<std::string>{"model.safetensors"});
  }

  void unwritable_directory_is_named() {
    TempDir tmp;
    const auto missing = tmp / "no-such-dir";
    const std::string missing_text = missing.string();
    HL_EXPECT_ERROR(hedgelab::io::save_safetensors(missing / "m.safetensors", {{"w", at::ones({2})}}),
                    missing_text.c_str(), "cannot create a file in this directory");
    write_file(tmp / "plain-file", "x");  // a file where a directory should be
    HL_EXPECT_ERROR(
        hedgelab::io::save_safetensors(tmp / "plain-file" / "m.safetensors", {{"w", at::ones({2})}}),
        "plain-file", "cannot create a file in this directory");
    // A read-only directory (only effective when not running as root).
    const auto ro = tmp / "ro";
    std::filesystem::create_directory(ro);
    std::filesystem::permissions(ro, std::filesystem::perms::owner_read | std::filesystem::perms::owner_exec);
    if (::access(ro.c_str(), W_OK) != 0) {
      const std::string ro_text = ro.string();
      HL_EXPECT_ERROR(hedgelab::io::save_safetensors(ro / "m.safetensors", {{"w", at::ones({2})}}),
                      ro_text.c_str(), "cannot create a file in this directory");
    }
    std::filesystem::permissions(ro, std::filesystem::perms::owner_all);
    QCOMPARE(dir_entries(ro), std::vector<std::string>{});
  }
};

QTEST_APPLESS_MAIN(TestSafetensors)
#include "test_safetensors.moc"
