// Safetensors reader/writer: round trips, zero-copy, alignment, multi-file stores, and one test
// per validation rule (each checks the error names the file and, where there is one, the tensor).
#include <sys/wait.h>

#include <cstring>
#include <filesystem>
#include <random>

#include "common/test_util.h"
#include "io/safetensors.h"
#include "io/st_test_util.h"

namespace omnirt {
namespace {

using testing::expect_error;
using testing::make_safetensors_bytes;
using testing::read_bytes;
using testing::TempDir;
using testing::write_bytes;

// A tensor of random bytes (every dtype's bit patterns are fine for byte-exact round trips).
Tensor random_bytes(const Shape& shape, DType dtype, std::mt19937_64& rng) {
  Tensor t = Tensor::empty(shape, dtype);
  auto* p = t.data<uint8_t>();
  for (size_t i = 0; i < t.nbytes(); ++i) p[i] = static_cast<uint8_t>(rng() & 0xff);
  return t;
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  Tensor ha = a.device() == Device::CPU ? a.contiguous() : a.to(Device::CPU);
  Tensor hb = b.device() == Device::CPU ? b.contiguous() : b.to(Device::CPU);
  return ha.dtype() == hb.dtype() && ha.shape() == hb.shape() && ha.nbytes() == hb.nbytes() &&
         std::memcmp(ha.raw(), hb.raw(), ha.nbytes()) == 0;
}

std::vector<std::pair<std::string, Tensor>> mixed_tensors(std::mt19937_64& rng) {
  return {
      {"blocks.0.attn.proj.weight", random_bytes({5, 7}, DType::F32, rng)},
      {"blocks.0.norm.bias", random_bytes({7}, DType::F16, rng)},  // 14 bytes: odd multiple of 2
      {"embed.bf16", random_bytes({3, 3, 3}, DType::BF16, rng)},
      {"q.int8", random_bytes({11}, DType::I8, rng)},
      {"mask.u8", random_bytes({4, 5}, DType::U8, rng)},
      {"pos.i64", random_bytes({3}, DType::I64, rng)},
      {"scale.f64", random_bytes({2, 1}, DType::F64, rng)},
      {"w.int4", random_bytes({3, 6}, DType::I4, rng)},
      {"w.fp4", random_bytes({10}, DType::FP4E2M1, rng)},
      {"fp8", random_bytes({9}, DType::F8E4M3, rng)},
      {"empty.i32", Tensor::empty({0, 4}, DType::I32)},
      {"scalar", random_bytes({}, DType::F32, rng)},
  };
}

TEST(Safetensors, RoundTripAllDtypes) {
  std::mt19937_64 rng(testing::test_seed());
  TempDir dir;
  const std::string path = dir.file("model.safetensors");
  auto tensors = mixed_tensors(rng);
  const std::map<std::string, std::string> meta = {{"format", "pt"}, {"omnirt.note", "héllo"}};
  write_safetensors(path, tensors, meta);

  SafetensorsFile f = SafetensorsFile::open(path);
  EXPECT_EQ(f.metadata(), meta);
  EXPECT_EQ(f.names().size(), tensors.size());
  EXPECT_EQ(f.header().data_start % 8, 0u) << "data section must start 8-byte aligned";
  for (const auto& [name, t] : tensors) {
    ASSERT_TRUE(f.contains(name)) << name;
    const auto& info = f.info(name);
    EXPECT_EQ(info.dtype, t.dtype()) << name;
    EXPECT_EQ(info.shape, t.shape()) << name;
    EXPECT_EQ(info.nbytes(), t.nbytes()) << name;
    const size_t align = dtype_bits(t.dtype()) <= 8 ? 1 : dtype_bits(t.dtype()) / 8;
    EXPECT_EQ((f.header().data_start + info.begin) % align, 0u) << name << " is misaligned";
    Tensor back = f.get(name);
    EXPECT_TRUE(same_bytes(back, t)) << name;
  }
  // Header keys are written sorted by name (the JSON text itself, not just our parse of it).
  const std::string raw = read_bytes(path);
  const std::string header = raw.substr(8, f.header().header_bytes);
  size_t prev = 0;
  for (const auto& name : f.names()) {
    const size_t at = header.find("\"" + name + "\"");
    ASSERT_NE(at, 0u) << name;
    EXPECT_GE(at, prev) << name << " out of order in " << header;
    prev = at;
  }
  // No gaps: the data section is exactly the tensors (other readers require this).
  uint64_t total = 0;
  for (const auto& [name, t] : tensors) total += t.nbytes();
  EXPECT_EQ(f.header().data_bytes, total);
}

TEST(Safetensors, WritesStridedViewsAsTheirLogicalContents) {
  std::mt19937_64 rng(testing::test_seed());
  TempDir dir;
  Tensor base = testing::random_tensor({4, 6}, rng);
  Tensor transposed = base.permute({1, 0});  // non-contiguous view
  Tensor sliced = base.slice(1, 1, 4);
  write_safetensors(dir.file("v.safetensors"), {{"t", transposed}, {"s", sliced}});
  SafetensorsFile f = SafetensorsFile::open(dir.file("v.safetensors"));
  Tensor t = f.get("t"), s = f.get("s");
  ASSERT_EQ(t.shape(), (Shape{6, 4}));
  ASSERT_EQ(s.shape(), (Shape{4, 3}));
  for (int i = 0; i < 6; ++i)
    for (int j = 0; j < 4; ++j)
      EXPECT_EQ(t.data<float>()[i * 4 + j], base.data<float>()[j * 6 + i]);
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 3; ++j)
      EXPECT_EQ(s.data<float>()[i * 3 + j], base.data<float>()[i * 6 + 1 + j]);
}

TEST(Safetensors, CpuGetIsZeroCopyAndKeepsTheMappingAlive) {
  std::mt19937_64 rng(testing::test_seed());
  TempDir dir;
  const std::string path = dir.file("z.safetensors");
  auto tensors = mixed_tensors(rng);
  write_safetensors(path, tensors);
  Tensor kept;
  {
    SafetensorsFile f = SafetensorsFile::open(path);
    const uint8_t* base = f.mapped_bytes();
    ASSERT_NE(base, nullptr);
    for (const auto& [name, t] : tensors) {
      Tensor v = f.get(name);
      const auto* p = static_cast<const uint8_t*>(v.raw());
      EXPECT_EQ(p, base + f.header().data_start + f.info(name).begin) << name << " was copied";
      EXPECT_EQ(v.device(), Device::CPU);
    }
    kept = f.get("blocks.0.attn.proj.weight");
  }
  // The SafetensorsFile is gone; the view must still read the mapped bytes (a dangling mapping
  // would fault or, under ASan, be reported).
  EXPECT_TRUE(same_bytes(kept, tensors[0].second));
}

// Safetensors does not require aligned offsets: a misaligned F32 must come back as an aligned
// copy with the same bytes, while a byte tensor can still be viewed in place.
TEST(Safetensors, MisalignedDataIsCopiedToAlignedMemory) {
  TempDir dir;
  const std::string path = dir.file("unaligned.safetensors");
  // Header padded so the F32 data lands at an odd file offset (8 + 118 + 3 = 129).
  std::string header = R"({"u8":{"dtype":"U8","shape":[3],"data_offsets":[0,3]},)"
                       R"("f":{"dtype":"F32","shape":[2,2],"data_offsets":[3,19]}})";
  ASSERT_LT(header.size(), 118u);
  header.resize(118, ' ');
  write_bytes(path, make_safetensors_bytes(header, 19));
  SafetensorsFile f = SafetensorsFile::open(path);
  const uint8_t* in_file = f.mapped_bytes() + f.header().data_start + 3;
  ASSERT_NE(reinterpret_cast<uintptr_t>(in_file) % 4, 0u)
      << "test setup: data should be misaligned";
  Tensor t = f.get("f");
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.raw()) % 4, 0u);
  EXPECT_NE(static_cast<const uint8_t*>(t.raw()), in_file);
  EXPECT_EQ(std::memcmp(t.raw(), in_file, 16), 0);
  Tensor u = f.get("u8");
  EXPECT_EQ(static_cast<const uint8_t*>(u.raw()), f.mapped_bytes() + f.header().data_start);
}

TEST(Safetensors, ReadsFilesWithGapsAndTrailingSpaces) {
  TempDir dir;
  const std::string path = dir.file("gaps.safetensors");
  const std::string header =
      R"({"a":{"dtype":"I16","shape":[2],"data_offsets":[8,12]},"__metadata__":{"k":"v"}})"
      "     ";
  write_bytes(path, make_safetensors_bytes(header, 16));
  SafetensorsFile f = SafetensorsFile::open(path);
  EXPECT_EQ(f.metadata().at("k"), "v");
  Tensor a = f.get("a");
  const auto* bytes = static_cast<const uint8_t*>(a.raw());
  for (int i = 0; i < 4; ++i) EXPECT_EQ(bytes[i], static_cast<uint8_t>((8 + i) * 7 + 1));
}

TEST(Safetensors, WriterReplacesAtomicallyAndLeavesNoPartialFile) {
  std::mt19937_64 rng(testing::test_seed());
  TempDir dir;
  const std::string path = dir.file("out.safetensors");
  write_bytes(path, "old contents");
  // A strided CUDA-labelled view fails when it is copied to the host, after the header is
  // written: the target must keep its old contents and no temporary file may remain.
  float fake = 0;
  Tensor bad = Tensor::from_blob(&fake, {2, 3}, DType::F32, Device::CUDA).permute({1, 0});
  EXPECT_THROW(write_safetensors(path, {{"good", testing::random_tensor({3}, rng)}, {"zbad", bad}}),
               Error);
  EXPECT_EQ(read_bytes(path), "old contents");
  size_t entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
    ++entries;
    EXPECT_EQ(e.path().filename(), "out.safetensors") << "left behind: " << e.path();
  }
  EXPECT_EQ(entries, 1u);
  // A good write replaces the file.
  Tensor good = testing::random_tensor({3}, rng);
  write_safetensors(path, {{"good", good}});
  EXPECT_TRUE(same_bytes(SafetensorsFile::open(path).get("good"), good));
}

TEST(Safetensors, WriterRejectsBadInput) {
  std::mt19937_64 rng(testing::test_seed());
  TempDir dir;
  const std::string path = dir.file("w.safetensors");
  Tensor t = testing::random_tensor({2}, rng);
  expect_error([&] { write_safetensors(path, {{"a", t}, {"a", t}}); }, {path, "'a'", "twice"});
  expect_error([&] { write_safetensors(path, {{"__metadata__", t}}); }, {path, "reserved"});
  expect_error([&] { write_safetensors(path, {{"u", Tensor()}}); }, {path, "'u'", "undefined"});
  expect_error(
      [&] {
        write_safetensors(dir.file("no/such/dir/x.safetensors"), {{"a", t}});
      },
      {"no/such/dir"});
  EXPECT_FALSE(std::filesystem::exists(path));
}

// ---- validation: one test per rule ------------------------------------------------------------

class SafetensorsInvalid : public ::testing::Test {
 protected:
  // Writes a hand-made file and expects open() to fail naming the file plus `parts`.
  void expect_open_error(const std::string& bytes, std::vector<std::string> parts) {
    write_bytes(path_, bytes);
    parts.push_back("bad.safetensors");
    expect_error([&] { SafetensorsFile::open(path_); }, parts);
  }
  TempDir dir_;
  std::string path_ = dir_.file("bad.safetensors");
};

TEST_F(SafetensorsInvalid, TruncatedBeforeTheHeaderLength) {
  expect_open_error(std::string("\x10\x00\x00", 3), {"truncated", "3 bytes"});
}

TEST_F(SafetensorsInvalid, EmptyFile) { expect_open_error("", {"truncated", "0 bytes"}); }

TEST_F(SafetensorsInvalid, TruncatedDataSection) {
  // A good file with its last bytes cut off: the last tensor's data is no longer all there.
  std::mt19937_64 rng(testing::test_seed());
  write_safetensors(path_, {{"blocks.0.mlp.w", testing::random_tensor({4, 4}, rng)}});
  std::string bytes = read_bytes(path_);
  bytes.resize(bytes.size() - 5);
  expect_open_error(bytes, {"tensor 'blocks.0.mlp.w'", "data_offsets [0, 64]", "59 bytes"});
}

TEST_F(SafetensorsInvalid, HeaderLengthBeyondFile) {
  expect_open_error(make_safetensors_bytes("{}", 0, 1000), {"header length 1000", "beyond"});
}

TEST_F(SafetensorsInvalid, HugeHeaderLength) {
  expect_open_error(make_safetensors_bytes("{}", 0, int64_t{1} << 62), {"header length", "beyond"});
}

TEST_F(SafetensorsInvalid, BadJson) {
  expect_open_error(make_safetensors_bytes(R"({"w": {"dtype": "F32", "shape": [2)", 8),
                    {"not valid JSON"});
}

TEST_F(SafetensorsInvalid, HeaderNotAnObject) {
  expect_open_error(make_safetensors_bytes("[1, 2, 3]", 0), {"must be a JSON object", "array"});
}

TEST_F(SafetensorsInvalid, DeeplyNestedJson) {
  expect_open_error(make_safetensors_bytes(std::string(5000, '[') + std::string(5000, ']'), 0),
                    {"nested"});
}

TEST_F(SafetensorsInvalid, OffsetsOutOfRange) {
  expect_open_error(
      make_safetensors_bytes(R"({"enc.w":{"dtype":"F32","shape":[10],"data_offsets":[0,40]}})", 16),
      {"tensor 'enc.w'", "data_offsets [0, 40]", "16 bytes"});
}

TEST_F(SafetensorsInvalid, OffsetsEndBeforeBegin) {
  expect_open_error(
      make_safetensors_bytes(R"({"enc.w":{"dtype":"U8","shape":[0],"data_offsets":[9,4]}})", 16),
      {"tensor 'enc.w'", "[9, 4]"});
}

TEST_F(SafetensorsInvalid, OffsetsDoNotMatchShape) {
  expect_open_error(
      make_safetensors_bytes(
          R"({"blocks.0.attn.proj.weight":{"dtype":"F32","shape":[5,7],"data_offsets":[0,100]}})",
          100),
      {"tensor 'blocks.0.attn.proj.weight': data_offsets [0, 100] hold 100 bytes but F32[5, 7] "
       "needs 140"});
}

TEST_F(SafetensorsInvalid, OverlappingTensors) {
  expect_open_error(
      make_safetensors_bytes(R"({"a.w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                             R"("b.w":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})",
                             24),
      {"'a.w'", "'b.w'", "overlap"});
}

TEST_F(SafetensorsInvalid, UnknownDtype) {
  expect_open_error(
      make_safetensors_bytes(R"({"head.w":{"dtype":"F99","shape":[2],"data_offsets":[0,8]}})", 8),
      {"tensor 'head.w'", "unknown dtype 'F99'", "BF16"});
}

TEST_F(SafetensorsInvalid, NegativeShape) {
  expect_open_error(make_safetensors_bytes(
                        R"({"head.w":{"dtype":"F32","shape":[3,-1],"data_offsets":[0,0]}})", 8),
                    {"tensor 'head.w'", "non-negative", "-1"});
}

TEST_F(SafetensorsInvalid, FractionalShape) {
  expect_open_error(
      make_safetensors_bytes(R"({"head.w":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}})", 8),
      {"tensor 'head.w'", "2.5"});
}

TEST_F(SafetensorsInvalid, ShapeElementCountOverflows) {
  expect_open_error(make_safetensors_bytes(R"({"h":{"dtype":"F32","shape":[4294967296,4294967296],)"
                                           R"("data_offsets":[0,0]}})",
                                           8),
                    {"tensor 'h'", "too many elements"});
}

TEST_F(SafetensorsInvalid, MissingField) {
  expect_open_error(make_safetensors_bytes(R"({"h.w":{"dtype":"F32","shape":[2]}})", 8),
                    {"tensor 'h.w'", "missing field 'data_offsets'"});
}

TEST_F(SafetensorsInvalid, UnexpectedField) {
  expect_open_error(make_safetensors_bytes(
                        R"({"h.w":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"scale":1}})", 8),
                    {"tensor 'h.w'", "unexpected field 'scale'"});
}

TEST_F(SafetensorsInvalid, DuplicateTensorName) {
  expect_open_error(
      make_safetensors_bytes(R"({"h.w":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
                             R"("h.w":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}})",
                             8),
      {"'h.w'", "twice"});
}

TEST_F(SafetensorsInvalid, PackedOddInnermostDim) {
  expect_open_error(
      make_safetensors_bytes(R"({"q.w":{"dtype":"I4","shape":[2,3],"data_offsets":[0,3]}})", 8),
      {"tensor 'q.w'", "even innermost"});
}

TEST_F(SafetensorsInvalid, MetadataNotStrings) {
  expect_open_error(make_safetensors_bytes(R"({"__metadata__":{"epochs":3}})", 0),
                    {"__metadata__", "'epochs'", "string"});
}

TEST_F(SafetensorsInvalid, MissingTensorLookupSuggestsCloseNames) {
  std::mt19937_64 rng(testing::test_seed());
  write_safetensors(path_, {{"blocks.0.attn.proj.weight", testing::random_tensor({2}, rng)},
                            {"blocks.1.attn.proj.weight", testing::random_tensor({2}, rng)},
                            {"lm_head.weight", testing::random_tensor({2}, rng)}});
  SafetensorsFile f = SafetensorsFile::open(path_);
  expect_error([&] { f.get("blocks.0.attn.proj.weigth"); },
               {"bad.safetensors", "no tensor named 'blocks.0.attn.proj.weigth'",
                "did you mean 'blocks.0.attn.proj.weight'"});
  expect_error([&] { f.info("zzz"); }, {"bad.safetensors", "'zzz'"});
  EXPECT_FALSE(f.contains("zzz"));
}

TEST_F(SafetensorsInvalid, NotAFile) {
  expect_error([&] { SafetensorsFile::open(dir_.file("missing.safetensors")); },
               {"missing.safetensors", "cannot open"});
  expect_error([&] { SafetensorsFile::open(dir_.path().string()); }, {"folder"});
}

// ---- WeightStore -------------------------------------------------------------------------------

TEST(WeightStore, FolderOfShards) {
  std::mt19937_64 rng(testing::test_seed());
  TempDir dir;
  Tensor a = random_bytes({3, 5}, DType::BF16, rng), b = random_bytes({7}, DType::I8, rng);
  Tensor c = random_bytes({2, 2}, DType::F32, rng);
  write_safetensors(dir.file("model-00001-of-00002.safetensors"), {{"a", a}, {"b", b}});
  write_safetensors(dir.file("model-00002-of-00002.safetensors"), {{"c", c}});
  WeightStore store = WeightStore::open(dir.path().string());
  EXPECT_EQ(store.names(), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(store.files().size(), 2u);
  EXPECT_TRUE(same_bytes(store.get("a"), a));
  EXPECT_TRUE(same_bytes(store.get("b"), b));
  EXPECT_TRUE(same_bytes(store.get("c"), c));
  EXPECT_NE(store.file_of("c").path().find("00002"), std::string::npos);
  expect_error([&] { store.get("d"); }, {dir.path().string(), "'d'"});
}

TEST(WeightStore, DuplicateNameAcrossFilesIsAnError) {
  std::mt19937_64 rng(testing::test_seed());
  TempDir dir;
  write_safetensors(dir.file("one.safetensors"), {{"x.w", testing::random_tensor({2}, rng)}});
  write_safetensors(dir.file("two.safetensors"), {{"x.w", testing::random_tensor({2}, rng)}});
  expect_error([&] { WeightStore::open(dir.path().string()); },
               {"'x.w'", "one.safetensors", "two.safetensors"});
}

TEST(WeightStore, HuggingFaceIndex) {
  std::mt19937_64 rng(testing::test_seed());
  TempDir dir;
  Tensor a = testing::random_tensor({4}, rng), b = testing::random_tensor({5}, rng);
  write_safetensors(dir.file("s1.safetensors"), {{"a", a}});
  write_safetensors(dir.file("s2.safetensors"), {{"b", b}});
  write_safetensors(dir.file("stray.safetensors"), {{"a", a}});  // not in the index: ignored
  const std::string index = dir.file("model.safetensors.index.json");
  write_bytes(index, R"({"metadata":{"total_size":36},)"
                     R"("weight_map":{"a":"s1.safetensors","b":"s2.safetensors"}})");
  for (const std::string& p : {index, dir.path().string()}) {
    WeightStore store = WeightStore::open(p);
    EXPECT_EQ(store.names(), (std::vector<std::string>{"a", "b"}));
    EXPECT_TRUE(same_bytes(store.get("b"), b));
  }
  // The index and the shards must agree.
  write_bytes(index, R"({"weight_map":{"a":"s2.safetensors","b":"s2.safetensors"}})");
  expect_error([&] { WeightStore::open(index); }, {"model.safetensors.index.json", "'a'"});
  write_bytes(index, R"({"weight_map":{"a":"s1.safetensors","b":"s3.safetensors"}})");
  expect_error([&] { WeightStore::open(index); }, {"s3.safetensors"});
  write_bytes(index, R"({"weight_map":{"a":"s1.safetensors"}, )");
  expect_error([&] { WeightStore::open(index); }, {"model.safetensors.index.json", "JSON"});
}

TEST(WeightStore, EmptyFolderAndMissingPath) {
  TempDir dir;
  expect_error([&] { WeightStore::open(dir.path().string()); }, {"no *.safetensors"});
  expect_error([&] { WeightStore::open(dir.file("nope")); }, {"nope", "no such"});
}

// ---- CUDA ----------------------------------------------------------------------------------

TEST(SafetensorsCuda, GetUploadsAndWriterDownloads) {
  OMNIRT_REQUIRE_CUDA();
  std::mt19937_64 rng(testing::test_seed());
  TempDir dir;
  auto tensors = mixed_tensors(rng);
  write_safetensors(dir.file("g.safetensors"), tensors);
  SafetensorsFile f = SafetensorsFile::open(dir.file("g.safetensors"));
  std::vector<std::pair<std::string, Tensor>> on_gpu;
  for (const auto& [name, t] : tensors) {
    Tensor g = f.get(name, Device::CUDA);
    EXPECT_EQ(g.device(), Device::CUDA) << name;
    EXPECT_TRUE(same_bytes(g, t)) << name;
    on_gpu.emplace_back(name, g);
  }
  // Writing device tensors copies them to the host.
  write_safetensors(dir.file("from_gpu.safetensors"), on_gpu);
  SafetensorsFile back = SafetensorsFile::open(dir.file("from_gpu.safetensors"));
  for (const auto& [name, t] : tensors) EXPECT_TRUE(same_bytes(back.get(name), t)) << name;
}

// ---- interoperability with the reference Python implementation --------------------------------

int run_shell(const std::string& cmd) {
  const int rc = std::system(cmd.c_str());
  return rc == -1 ? -1 : WEXITSTATUS(rc);
}

TEST(SafetensorsInterop, PythonReadsOursAndWeReadPythons) {
  if (run_shell("python3 -c 'import safetensors.numpy, numpy' >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "skipped: python3 with safetensors and numpy is not available";
  std::mt19937_64 rng(testing::test_seed());
  TempDir dir;
  // Ours -> Python: Python prints each tensor's dtype, shape and bytes; we compare to ours.
  std::vector<std::pair<std::string, Tensor>> tensors = {
      {"f32", random_bytes({3, 5}, DType::F32, rng)},
      {"f16", random_bytes({7}, DType::F16, rng)},
      {"i8", random_bytes({5}, DType::I8, rng)},
      {"u8", random_bytes({2, 3}, DType::U8, rng)},
      {"i64", random_bytes({3}, DType::I64, rng)}};
  write_safetensors(dir.file("ours.safetensors"), tensors, {{"who", "omnirt"}});
  const std::string script = dir.file("check.py");
  write_bytes(script,
              "import sys\n"
              "from safetensors import safe_open\n"
              "with safe_open(sys.argv[1], framework='np') as f:\n"
              "    print('meta', f.metadata()['who'])\n"
              "    for k in sorted(f.keys()):\n"
              "        t = f.get_tensor(k)\n"
              "        print(k, t.dtype.str, list(t.shape), t.tobytes().hex())\n"
              "from safetensors.numpy import save_file\n"
              "import numpy as np\n"
              "save_file({'w': np.arange(6, dtype=np.float32).reshape(2, 3) * 0.5 - 1,\n"
              "           'h': np.array([1.5, -2, 3], dtype=np.float16)}, sys.argv[2],\n"
              "          metadata={'from': 'python'})\n");
  const std::string out_file = dir.file("py_out.txt");
  ASSERT_EQ(run_shell("python3 " + script + " " + dir.file("ours.safetensors") + " " +
                      dir.file("theirs.safetensors") + " > " + out_file),
            0);
  const std::string printed = read_bytes(out_file);
  EXPECT_NE(printed.find("meta omnirt"), std::string::npos) << printed;
  auto hex = [](const Tensor& t) {
    std::string s;
    char buf[3];
    for (size_t i = 0; i < t.nbytes(); ++i) {
      std::snprintf(buf, sizeof buf, "%02x", t.data<uint8_t>()[i]);
      s += buf;
    }
    return s;
  };
  for (const auto& [name, t] : tensors) {
    std::string shape = "[";
    for (int i = 0; i < t.ndim(); ++i) shape += (i ? ", " : "") + std::to_string(t.shape()[i]);
    shape += "]";
    // dtype.str sits between the name and the shape; check the name, then shape + bytes.
    const size_t at = printed.find("\n" + name + " ") + 1;
    ASSERT_NE(at, 0u) << name << " missing from python output:\n" << printed;
    const std::string rest = printed.substr(at, printed.find('\n', at) - at);
    EXPECT_NE(rest.find(shape + " " + hex(t)), std::string::npos) << rest;
  }
  // Python -> ours.
  SafetensorsFile theirs = SafetensorsFile::open(dir.file("theirs.safetensors"));
  EXPECT_EQ(theirs.metadata().at("from"), "python");
  EXPECT_EQ(theirs.get("w").to_float_vector(),
            (std::vector<float>{-1.0f, -0.5f, 0.0f, 0.5f, 1.0f, 1.5f}));
  EXPECT_EQ(theirs.get("h").to_float_vector(), (std::vector<float>{1.5f, -2.0f, 3.0f}));
}

}  // namespace
}  // namespace omnirt
