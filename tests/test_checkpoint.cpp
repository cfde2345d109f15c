// The checkpoint folder: single-file and sharded weights load, every inconsistency of the index is refused,
// pickles are refused with a conversion hint, and tensor/shape mismatches are named in one line.
#include <QTest>

#include <ATen/ATen.h>

#include <nlohmann/json.hpp>

#include "core/io/checkpoint.h"
#include "core/io/safetensors_torch.h"
#include "tests/test_util.h"

using hedgelab::io::CheckpointFolder;
using hedgelab::io::save_safetensors;
using hedgelab::testing::TempDir;
using hedgelab::testing::write_file;

namespace {

const char* kConfig = R"({"model_type": "gpt_neox", "hidden_size": 4, "num_attention_heads": 2})";

void write_index(const std::filesystem::path& dir, const std::string& weight_map) {
  write_file(dir / "model.safetensors.index.json",
             R"({"metadata": {"total_size": 0}, "weight_map": )" + weight_map + "}");
}

// Two shards: embed in shard 1, the dense layer and head in shard 2.
void write_sharded(const std::filesystem::path& dir) {
  write_file(dir / "config.json", kConfig);
  save_safetensors(dir / "model-00001-of-00002.safetensors",
                   {{"gpt_neox.embed_in.weight", at::arange(12, at::kFloat).reshape({3, 4}).to(at::kHalf)}});
  save_safetensors(dir / "model-00002-of-00002.safetensors",
                   {{"gpt_neox.layers.0.attention.dense.weight", at::ones({4, 4}, at::kBFloat16)},
                    {"embed_out.weight", at::full({3, 4}, 2.0f)}});
  write_index(dir, R"({"gpt_neox.embed_in.weight": "model-00001-of-00002.safetensors",
                       "gpt_neox.layers.0.attention.dense.weight": "model-00002-of-00002.safetensors",
                       "embed_out.weight": "model-00002-of-00002.safetensors"})");
}

// The message of the hedgelab::Error that `f` throws ("" when it throws none).
template <typename F>
std::string error_of(F f) {
  try {
    f();
  } catch (const hedgelab::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

class TestCheckpoint : public QObject {
  Q_OBJECT
 private Q_SLOTS:
  void single_file() {
    TempDir tmp;
    write_file(tmp / "config.json", kConfig);
    const at::Tensor w = at::randn({4, 4}).to(at::kHalf);
    save_safetensors(tmp / "model.safetensors",
                     {{"gpt_neox.layers.0.attention.dense.weight", w},
                      {"gpt_neox.layers.0.attention.bias", at::ones({1, 1, 2, 2}, at::kBool)},
                      {"embed_out.weight", at::ones({3, 4}, at::kHalf)}});
    auto folder = CheckpointFolder::open(tmp.path());
    QCOMPARE(folder.dir(), tmp.path());
    QCOMPARE(folder.config_path(), tmp / "config.json");
    QCOMPARE(folder.config().at("hidden_size").get<int>(), 4);
    QVERIFY(!folder.tokenizer_path());
    QCOMPARE(folder.tensor_names(),
             (std::vector<std::string>{"embed_out.weight", "gpt_neox.layers.0.attention.bias",
                                       "gpt_neox.layers.0.attention.dense.weight"}));
    QVERIFY(folder.has("embed_out.weight"));
    QVERIFY(!folder.has("embed_in.weight"));
    QCOMPARE(folder.info("embed_out.weight").shape, (std::vector<int64_t>{3, 4}));
    QCOMPARE(folder.weight_files(), std::vector<std::filesystem::path>{tmp / "model.safetensors"});
    const at::Tensor loaded = folder.load_expect("gpt_neox.layers.0.attention.dense.weight", {4, 4});
    QCOMPARE(loaded.scalar_type(), at::kFloat);
    QVERIFY(at::equal(loaded, w.to(at::kFloat)));
    QVERIFY(at::equal(folder.load("gpt_neox.layers.0.attention.dense.weight", at::kHalf), w));
    QCOMPARE(folder.dtype_summary(), std::string("float16 + bool"));
    QCOMPARE(folder.total_parameters(), int64_t{16 + 12});  // the bool mask is not a parameter

    // Moving keeps the tensor table valid.
    CheckpointFolder moved = std::move(folder);
    QVERIFY(at::equal(moved.load("embed_out.weight"), at::ones({3, 4})));

    write_file(tmp / "tokenizer.json", "{}");
    const auto with_tokenizer = CheckpointFolder::open(tmp.path().string() + "/");  // trailing slash too
    QCOMPARE(*with_tokenizer.tokenizer_path(), tmp / "tokenizer.json");
    QCOMPARE(with_tokenizer.dir(), tmp.path());
  }

  void sharded_index() {
    TempDir tmp;
    write_sharded(tmp.path());
    const auto folder = CheckpointFolder::open(tmp.path());
    QCOMPARE(folder.tensor_names().size(), std::size_t{3});
    QCOMPARE(folder.weight_files().size(), std::size_t{2});
    QVERIFY(at::equal(folder.load("gpt_neox.embed_in.weight"), at::arange(12, at::kFloat).reshape({3, 4})));
    QVERIFY(at::equal(folder.load("gpt_neox.layers.0.attention.dense.weight"), at::ones({4, 4})));
    QVERIFY(at::equal(folder.load_expect("embed_out.weight", {3, 4}, at::kDouble),
                      at::full({3, 4}, 2.0, at::kDouble)));
    QCOMPARE(folder.file_of("embed_out.weight").path(), tmp / "model-00002-of-00002.safetensors");
    QCOMPARE(folder.dtype_summary(), std::string("bfloat16 + float16 + float32"));  // 16, 12, 12 elements
    QCOMPARE(folder.total_parameters(), int64_t{40});
  }

  void sharded_index_errors() {
    {
      TempDir tmp;
      write_sharded(tmp.path());
      std::filesystem::remove(tmp / "model-00002-of-00002.safetensors");
      HL_EXPECT_ERROR(CheckpointFolder::open(tmp.path()), "model-00002-of-00002.safetensors", "no such file",
                      "model.safetensors.index.json");
    }
    {
      TempDir tmp;
      write_sharded(tmp.path());
      write_index(tmp.path(), R"({"gpt_neox.embed_in.weight": "model-00001-of-00002.safetensors",
                                  "embed_out.weight": "model-00001-of-00002.safetensors"})");
      HL_EXPECT_ERROR(CheckpointFolder::open(tmp.path()), "model-00001-of-00002.safetensors",
                      "tensor \"embed_out.weight\" is missing", "lists it in this shard");
    }
    {
      TempDir tmp;
      write_sharded(tmp.path());
      write_index(tmp.path(), R"({"gpt_neox.embed_in.weight": "../model-00001-of-00002.safetensors"})");
      HL_EXPECT_ERROR(CheckpointFolder::open(tmp.path()), "model.safetensors.index.json",
                      "\"../model-00001-of-00002.safetensors\"", "plain file name");
      write_index(tmp.path(), R"({"w": "/etc/passwd"})");
      HL_EXPECT_ERROR(CheckpointFolder::open(tmp.path()), "plain file name");
      write_index(tmp.path(), R"({"w": ".."})");
      HL_EXPECT_ERROR(CheckpointFolder::open(tmp.path()), "plain file name");
    }
    {
      TempDir tmp;
      write_sharded(tmp.path());
      save_safetensors(
          tmp / "model-00001-of-00002.safetensors",  // now also holds embed_out.weight
          {{"gpt_neox.embed_in.weight", at::ones({3, 4})}, {"embed_out.weight", at::ones({3, 4})}});
      HL_EXPECT_ERROR(CheckpointFolder::open(tmp.path()), "tensor \"embed_out.weight\"", "is in both",
                      "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors");
    }
    {
      TempDir tmp;
      write_sharded(tmp.path());
      write_file(tmp / "model.safetensors.index.json", "{\"weight_map\": [1]}");
      HL_EXPECT_ERROR(CheckpointFolder::open(tmp.path()), "model.safetensors.index.json", "weight_map",
                      "expected an object");
      write_file(tmp / "model.safetensors.index.json", "{\"weight_map\": {\"w\": 3}}");
      HL_EXPECT_ERROR(CheckpointFolder::open(tmp.path()), "weight_map[\"w\"]", "expected a shard file name");
      write_file(tmp / "model.safetensors.index.json", "{weight_map");
      HL_EXPECT_ERROR(CheckpointFolder::open(tmp.path()), "model.safetensors.index.json", "not valid JSON");
    }
  }

  void refuses_pickles() {
    const char* fragments[] = {"pickle", "arbitrary code", "safe_serialization=True"};
    {
      TempDir tmp;
      write_file(tmp / "config.json", kConfig);
      write_file(tmp / "pytorch_model.bin", "PK\x03\x04 not really");
      const std::string dir = tmp.path().string();
      HL_EXPECT_ERROR(CheckpointFolder::open(tmp.path()), dir.c_str(), "pytorch_model.bin", fragments[0],
                      fragments[1], fragments[2]);
    }
    {
      TempDir tmp;
      write_file(tmp / "config.json", kConfig);
      write_file(tmp / "pytorch_model.bin.index.json", "{}");
      write_file(tmp / "pytorch_model-00001-of-00002.bin", "x");
      HL_EXPECT_ERROR(CheckpointFolder::open(tmp.path()), "pickle", "arbitrary code");
    }
    {
      TempDir tmp;
      write_file(tmp / "weights.pt", "x");
      HL_EXPECT_ERROR(CheckpointFolder::open(tmp.path()), "weights.pt", "pickle", "arbitrary code");
      HL_EXPECT_ERROR(CheckpointFolder::open(tmp / "weights.pt"), "weights.pt", "pickle", "arbitrary code",
                      "safetensors");
      write_file(tmp / "pytorch_model.bin", "x");
      HL_EXPECT_ERROR(CheckpointFolder::open(tmp / "pytorch_model.bin"), "pickle", "safe_serialization=True");
      write_file(tmp / "model.ckpt", "x");
      HL_EXPECT_ERROR(CheckpointFolder::open(tmp / "model.ckpt"), "model.ckpt", "pickle");
    }
  }

  void refuses_bad_folders() {
    TempDir tmp;
    HL_EXPECT_ERROR(CheckpointFolder::open(tmp / "absent"), "absent: no such file or directory");
    HL_EXPECT_ERROR(CheckpointFolder::open(tmp.path()), "no weights found", "model.safetensors");
    save_safetensors(tmp / "model.safetensors", {{"embed_out.weight", at::ones({2, 2})}});
    HL_EXPECT_ERROR(CheckpointFolder::open(tmp / "model.safetensors"), "is a file", "checkpoint folder");
    HL_EXPECT_ERROR(CheckpointFolder::open(tmp.path()), "config.json", "no such file");
    write_file(tmp / "config.json", "{\"hidden_size\": 4,");
    HL_EXPECT_ERROR(CheckpointFolder::open(tmp.path()), "config.json", "not valid JSON");
    write_file(tmp / "config.json", "[4]");
    HL_EXPECT_ERROR(CheckpointFolder::open(tmp.path()), "config.json", "expected a JSON object");
    write_file(tmp / "config.json", kConfig);
    write_file(tmp / "model.safetensors", "garbage!!");
    HL_EXPECT_ERROR(CheckpointFolder::open(tmp.path()), "model.safetensors", "header length");
  }

  void missing_tensor_and_wrong_shape() {
    TempDir tmp;
    write_file(tmp / "config.json", kConfig);
    save_safetensors(tmp / "model.safetensors",
                     {{"gpt_neox.layers.0.attention.dense.weight", at::ones({4, 4})}});
    const auto folder = CheckpointFolder::open(tmp.path());
    const std::string dir = tmp.path().string();
    QCOMPARE(error_of([&] { folder.load("embed_out.weight"); }),
             dir + ": tensor \"embed_out.weight\" is missing");
    HL_EXPECT_ERROR(folder.info("embed_out.weight"), "is missing");
    HL_EXPECT_ERROR(folder.load_expect("embed_out.weight", {8, 8}), "\"embed_out.weight\" is missing");
    QCOMPARE(error_of([&] {
               folder.load_expect("gpt_neox.layers.0.attention.dense.weight", {8, 8});
             }),
             dir +
                 "/model.safetensors: tensor \"gpt_neox.layers.0.attention.dense.weight\" has shape [4, 4], "
                 "expected [8, 8]");
  }
};

QTEST_APPLESS_MAIN(TestCheckpoint)
#include "test_checkpoint.moc"
