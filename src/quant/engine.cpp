#include "quant/engine.h"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/tensor.h"
#include "core/version.h"
#include "io/safetensors.h"
#include "models/llm/llama.h"
#include "models/llm/tokenizer.h"
#include "quant/awq.h"
#include "quant/int4.h"
#include "quant/llm_quant.h"

namespace omnirt::quant {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Files copied unchanged from the checkpoint (llm.safetensors is rewritten).
const char* const kCopiedFiles[] = {"config.json", "vision.safetensors", "tokenizer.model"};
const char* const kManifestName = "manifest.json";

std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  OMNIRT_CHECK(f.good(), path, ": cannot open the file");
  std::ostringstream os;
  os << f.rdbuf();
  return os.str();
}

std::string fnv1a64_hex(const std::string& bytes) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ull;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

std::string utc_now_iso8601() {
  const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

bool is_float_precision(const std::string& p) { return p == "fp32" || p == "fp16" || p == "bf16"; }

DType float_precision_dtype(const std::string& p) {
  if (p == "fp32") return DType::F32;
  if (p == "fp16") return DType::F16;
  return DType::BF16;
}

// The LLM's linear weights (q/k/v/o, gate/up/down projections) are quantised; embeddings, norms
// and lm_head stay in floating point (the usual weight-only INT4 recipe).
bool is_quantised_linear(const std::string& name, const SafetensorsTensorInfo& info) {
  const std::string suffix = "_proj.weight";
  return info.shape.size() == 2 && name.rfind("model.layers.", 0) == 0 &&
         name.size() > suffix.size() &&
         name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Precision of the vision weights as stored: the float dtype most of their bytes are in.
std::string vision_precision_of(const std::string& path) {
  const SafetensorsFile f = SafetensorsFile::open(path);
  std::map<DType, uint64_t> bytes;
  for (const auto& n : f.names()) {
    const auto& info = f.info(n);
    if (dtype_is_float(info.dtype)) bytes[info.dtype] += dtype_nbytes(info.dtype, info.numel());
  }
  DType best = DType::F32;
  uint64_t most = 0;
  for (auto [d, b] : bytes)
    if (b > most) most = b, best = d;
  if (best == DType::F16) return "fp16";
  if (best == DType::BF16) return "bf16";
  OMNIRT_CHECK(best == DType::F32, path, ": vision weights are mostly ", dtype_name(best),
               "; expected F32, F16 or BF16");
  return "fp32";
}

void write_text_atomic(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    OMNIRT_CHECK(f.good(), tmp, ": cannot create the file");
    f << text;
    f.flush();
    OMNIRT_CHECK(f.good(), tmp, ": write failed");
  }
  fs::rename(tmp, path);
}

json manifest_to_json(const EngineManifest& m) {
  json j;
  j["format_version"] = m.format_version;
  j["omnirt_version"] = m.omnirt_version;
  j["omnirt_commit"] = m.omnirt_commit;
  j["built_at"] = m.built_at;
  j["source"] = {
      {"path", m.source_path}, {"config_fnv1a64", m.source_config_hash}, {"files", m.source_files}};
  j["precisions"] = {{"vision", m.vision_precision}, {"llm", m.llm_precision}};
  j["group_size"] = m.group_size == 0 ? json(nullptr) : json(m.group_size);
  j["llm_other_dtype"] = m.llm_other_dtype;
  j["gpu_arch"] = m.gpu_arch;
  if (m.calibration.empty()) {
    j["calibration"] = nullptr;
  } else {
    // An AWQ build records an object (kept as JSON text in EngineManifest); other text as is.
    const json c = json::parse(m.calibration, nullptr, /*allow_exceptions=*/false);
    j["calibration"] = c.is_object() ? c : json(m.calibration);
  }
  j["files"] = m.files;
  return j;
}

// Field access that names the manifest and the field on a missing or mistyped value.
template <typename T>
T field(const json& j, const std::string& key, const std::string& where) {
  OMNIRT_CHECK(j.is_object() && j.contains(key), where, ": missing field \"", key, "\"");
  try {
    return j.at(key).get<T>();
  } catch (const json::exception& e) {
    OMNIRT_FAIL(where, ": field \"", key, "\" has the wrong type (", j.at(key).type_name(), ")");
  }
}

// Splits each layer's quantised linears (q/k/v and gate/up fused by rows) back into the
// checkpoint's modules: module name -> rows(linear, first row, end row).
template <typename Module, typename Rows>
std::map<std::string, Module> split_into_modules(const llm::LlamaConfig& cfg,
                                                 const llm::LlamaWeights& w, Rows rows) {
  std::map<std::string, Module> out;
  const int64_t qd = cfg.q_dim(), kvd = cfg.kv_dim(), I = cfg.intermediate_size;
  for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    const llm::LlamaLayerWeights& lw = w.layers[static_cast<size_t>(l)];
    out[p + "self_attn.q_proj"] = rows(lw.q_wqkv, 0, qd);
    out[p + "self_attn.k_proj"] = rows(lw.q_wqkv, qd, qd + kvd);
    out[p + "self_attn.v_proj"] = rows(lw.q_wqkv, qd + kvd, qd + 2 * kvd);
    out[p + "self_attn.o_proj"] = rows(lw.q_wo, 0, lw.q_wo.codes.dim(0));
    out[p + "mlp.gate_proj"] = rows(lw.q_gate_up, 0, I);
    out[p + "mlp.up_proj"] = rows(lw.q_gate_up, I, 2 * I);
    out[p + "mlp.down_proj"] = rows(lw.q_down, 0, lw.q_down.codes.dim(0));
  }
  return out;
}

// AWQ (quant/awq.h): calibrates the checkpoint's float32 LLM on the CPU, AWQ-quantises every
// decoder linear, and returns the engine tensors per checkpoint module ("model.layers.0.
// self_attn.q_proj" -> qweight, scales, in_scale: q/k/v share the in_scale of their common input,
// gate/up too) plus the manifest's calibration record.
struct AwqModule {
  Tensor qweight, scales, in_scale;
};

std::map<std::string, AwqModule> awq_quantise_checkpoint(const fs::path& src,
                                                         const SafetensorsFile& llm_file,
                                                         const std::string& precision,
                                                         int64_t group_size, int grid,
                                                         json* calibration) {
  OMNIRT_CHECK(grid >= 1, "omnirt build: the AWQ alpha grid must have >= 1 step, got ", grid);
  const auto t0 = std::chrono::steady_clock::now();
  const llm::LlamaConfig cfg = llm::LlamaConfig::from_folder(src.string());
  llm::LlamaWeights w = llm::load_llama_weights(
      cfg, [&](const std::string& n) { return llm_file.contains(n) ? llm_file.get(n) : Tensor(); },
      Device::CPU, DType::F32, llm_file.path());
  const llm::Tokenizer tok = llm::Tokenizer::load((src / "tokenizer.model").string());
  const std::vector<AwqCalibText> texts = default_awq_calibration();
  const AwqActivations acts = collect_awq_activations(cfg, w, tok, texts);
  const auto t1 = std::chrono::steady_clock::now();
  const std::vector<AwqLinearReport> reports =
      quantize_llama_weights_awq(w, acts, group_size, grid, precision);
  const auto t2 = std::chrono::steady_clock::now();

  json seqs = json::array();
  for (size_t i = 0; i < texts.size(); ++i)
    seqs.push_back({{"prompt", texts[i].prompt},
                    {"answer", texts[i].answer},
                    {"tokens", acts.sequence_tokens[i]}});
  json linears = json::object();
  double calib_sum = 0, plain_sum = 0;
  for (const AwqLinearReport& r : reports) {
    linears[r.name] = {
        {"alpha", r.alpha},
        {"error_vs_plain_int4", r.plain_error > 0 ? r.calib_error / r.plain_error : 1.0}};
    calib_sum += r.calib_error;
    plain_sum += r.plain_error;
  }
  *calibration = {
      {"method", "awq"},
      {"source",
       "text-only planning prompts: the Vicuna-v1 planning prompt with its <image> placeholder "
       "dropped (no vision tokens), each followed by a teacher-forced planning answer"},
      {"activations",
       "inputs of every decoder linear, float32 CPU LLM engine, teacher-forced "
       "prefill; q/k/v and gate/up share one input and one in_scale"},
      {"sequences", seqs},
      {"tokens", acts.tokens},
      {"alpha_grid", {{"steps", grid}, {"min", 0.0}, {"max", 1.0}}},
      {"scale", "s_k = mean|x_k|^alpha, in_scale = 1/s (quant/int4.h quantize_int4_awq)"},
      {"group_size", group_size == 0 ? json(nullptr) : json(group_size)},
      {"error_vs_plain_int4_total", plain_sum > 0 ? calib_sum / plain_sum : 1.0},
      {"linears", linears},
      {"seconds",
       {{"activations", std::chrono::duration<double>(t1 - t0).count()},
        {"scale_search", std::chrono::duration<double>(t2 - t1).count()}}}};

  auto rows = [](const llm::QuantLinear& q, int64_t begin, int64_t end) {
    return AwqModule{q.codes.slice(0, begin, end).clone(), q.scales.slice(0, begin, end).clone(),
                     q.in_scale.clone()};
  };
  return split_into_modules<AwqModule>(cfg, w, rows);
}

// NVFP4 (quant/nvfp4.h): quantises the checkpoint's float32 decoder linears exactly as
// quantize_llama_weights does at load (the fused q/k/v and gate/up matrices, one global scale
// each), then splits the fused codes and block scales back into the checkpoint's modules. Each
// module of a fused matrix records that matrix's global scale, so loading concatenates the rows
// and gets the very codes, scales and global scale of load-time quantisation (bit-identical
// logits), with no conversion. Returns module -> {qweight, scales, global_scale}.
struct Nvfp4Module {
  Tensor qweight, scales, global_scale;
};
std::map<std::string, Nvfp4Module> nvfp4_quantise_checkpoint(const fs::path& src,
                                                             const SafetensorsFile& llm_file) {
  const llm::LlamaConfig cfg = llm::LlamaConfig::from_folder(src.string());
  llm::LlamaWeights w = llm::load_llama_weights(
      cfg, [&](const std::string& n) { return llm_file.contains(n) ? llm_file.get(n) : Tensor(); },
      Device::CPU, DType::F32, llm_file.path());
  quantize_llama_weights(w, "nvfp4");
  auto rows = [](const llm::QuantLinear& q, int64_t begin, int64_t end) {
    Tensor g = Tensor::empty({1}, DType::F32);
    g.data<float>()[0] = q.global_scale;
    return Nvfp4Module{q.codes.slice(0, begin, end).clone(), q.scales.slice(0, begin, end).clone(),
                       g};
  };
  return split_into_modules<Nvfp4Module>(cfg, w, rows);
}

}  // namespace

void parse_llm_precision(const std::string& name_in, int64_t* group_size, bool* awq) {
  const std::string awq_suffix = "-awq";
  const bool is_awq =
      name_in.size() > awq_suffix.size() &&
      name_in.compare(name_in.size() - awq_suffix.size(), awq_suffix.size(), awq_suffix) == 0;
  const std::string name = is_awq ? name_in.substr(0, name_in.size() - awq_suffix.size()) : name_in;
  int64_t g = 0;
  bool ok = ((is_float_precision(name) || name == "nvfp4") && !is_awq) || name == "int4";
  if (!ok && name.rfind("int4-g", 0) == 0 && name.size() > 6) {
    const std::string digits = name.substr(6);
    ok = digits.find_first_not_of("0123456789") == std::string::npos && digits.size() <= 6;
    if (ok) g = std::stoll(digits);
    ok = ok && g > 0 && g % 2 == 0;
  }
  OMNIRT_CHECK(ok, "unknown LLM precision \"", name_in,
               "\": expected fp32, fp16, bf16, nvfp4, int4 (per channel) or int4-g<G> with an even "
               "group size G, e.g. int4-g128; INT4 may end in -awq (int4-awq, int4-g128-awq)");
  if (group_size) *group_size = g;
  if (awq) *awq = is_awq;
}

int parse_gpu_arch(const std::string& arch) {
  bool ok = arch.size() > 3 && arch.rfind("sm_", 0) == 0 && arch.size() <= 6 &&
            arch.find_first_not_of("0123456789", 3) == std::string::npos;
  OMNIRT_CHECK(ok, "unknown GPU architecture \"", arch,
               "\": expected sm_<major><minor>, e.g. sm_90");
  return std::stoi(arch.substr(3));
}

RuntimeCaps RuntimeCaps::detect() {
  RuntimeCaps c;
  if (cuda_available()) {
    c.device = Device::CUDA;
    c.compute_capability = cuda_compute_capability();
  }
  return c;
}

EngineManifest build_engine(const BuildOptions& opt) {
  int64_t group_size = 0;
  bool awq = false;
  parse_llm_precision(opt.llm_precision, &group_size, &awq);
  std::string arch = opt.gpu_arch;
  if (arch.empty())
    arch = cuda_available() ? "sm_" + std::to_string(cuda_compute_capability()) : "sm_90";
  parse_gpu_arch(arch);

  const fs::path src(opt.model_dir), out(opt.out_dir);
  OMNIRT_CHECK(fs::is_directory(src), "checkpoint folder ", opt.model_dir, " does not exist");
  for (const char* f : {"config.json", "llm.safetensors", "vision.safetensors", "tokenizer.model"})
    OMNIRT_CHECK(fs::is_regular_file(src / f), "checkpoint folder ", opt.model_dir, " has no ", f,
                 " (a checkpoint needs config.json, llm.safetensors, "
                 "vision.safetensors and tokenizer.model)");
  OMNIRT_CHECK(fs::weakly_canonical(src) != fs::weakly_canonical(out),
               "omnirt build: --out must differ from the checkpoint folder ", opt.model_dir);
  fs::create_directories(out);
  // A half-replaced engine must not look valid: drop the old manifest first.
  fs::remove(out / kManifestName);

  EngineManifest m;
  m.format_version = kEngineFormatVersion;
  m.omnirt_version = version();
  m.omnirt_commit = git_commit();
  m.built_at = utc_now_iso8601();
  m.source_path = fs::absolute(src).lexically_normal().string();
  m.source_config_hash = fnv1a64_hex(read_bytes((src / "config.json").string()));
  for (const char* f : {"config.json", "llm.safetensors", "vision.safetensors", "tokenizer.model"})
    m.source_files[f] = fs::file_size(src / f);
  m.vision_precision = vision_precision_of((src / "vision.safetensors").string());
  m.llm_precision = opt.llm_precision;
  m.group_size = group_size;
  m.gpu_arch = arch;

  // LLM weights in the target precision.
  const SafetensorsFile llm = SafetensorsFile::open((src / "llm.safetensors").string());
  const bool nvfp4 = opt.llm_precision == "nvfp4";
  const bool int4 = !is_float_precision(opt.llm_precision) && !nvfp4;
  // NVFP4 keeps the tensors it does not quantise (embeddings, norms, lm_head) in the
  // checkpoint's dtype, unconverted, so the engine equals quantising the checkpoint at load.
  OMNIRT_CHECK(!nvfp4 || llm.contains("model.embed_tokens.weight"), src.string(),
               "/llm.safetensors has no model.embed_tokens.weight");
  const DType other = nvfp4  ? llm.info("model.embed_tokens.weight").dtype
                      : int4 ? DType::F16
                             : float_precision_dtype(opt.llm_precision);
  m.llm_other_dtype = std::string(dtype_name(other));
  std::map<std::string, Nvfp4Module> nvfp4_modules;
  if (nvfp4) nvfp4_modules = nvfp4_quantise_checkpoint(src, llm);
  std::map<std::string, AwqModule> awq_modules;
  if (awq) {
    json calibration;
    awq_modules = awq_quantise_checkpoint(src, llm, opt.llm_precision, group_size, opt.awq_grid,
                                          &calibration);
    m.calibration = calibration.dump();
  }
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const auto& name : llm.names()) {
    const auto& info = llm.info(name);
    const Tensor t = llm.get(name);
    if (nvfp4 && is_quantised_linear(name, info)) {
      const std::string module = name.substr(0, name.size() - std::string(".weight").size());
      const auto it = nvfp4_modules.find(module);
      OMNIRT_CHECK(it != nvfp4_modules.end(), "llm.safetensors: ", name,
                   " looks like a decoder linear but is not one of the model's q/k/v/o, "
                   "gate/up/down projections; NVFP4 cannot quantise it");
      tensors.emplace_back(module + ".qweight", it->second.qweight);
      tensors.emplace_back(module + ".scales", it->second.scales);
      tensors.emplace_back(module + ".global_scale", it->second.global_scale);
    } else if (nvfp4) {
      tensors.emplace_back(name, t);
    } else if (int4 && is_quantised_linear(name, info) && awq) {
      const std::string module = name.substr(0, name.size() - std::string(".weight").size());
      const auto it = awq_modules.find(module);
      OMNIRT_CHECK(it != awq_modules.end(), "llm.safetensors: ", name,
                   " looks like a decoder linear but is not one of the model's q/k/v/o, "
                   "gate/up/down projections; AWQ cannot quantise it");
      tensors.emplace_back(module + ".qweight", it->second.qweight);
      tensors.emplace_back(module + ".scales", it->second.scales);
      tensors.emplace_back(module + ".in_scale", it->second.in_scale);
    } else if (int4 && is_quantised_linear(name, info)) {
      const std::string module = name.substr(0, name.size() - std::string(".weight").size());
      Int4Weight q = quantize_int4(t, group_size, "llm.safetensors: " + name);
      tensors.emplace_back(module + ".qweight", q.qweight);
      tensors.emplace_back(module + ".scales", q.scales);
    } else if (dtype_is_float(info.dtype) && info.dtype != other) {
      tensors.emplace_back(name, t.to_dtype(other));
    } else {
      tensors.emplace_back(name, t);
    }
  }
  write_safetensors((out / "llm.safetensors").string(), tensors,
                    {{"omnirt.llm_precision", opt.llm_precision}});
  m.files["llm.safetensors"] = fs::file_size(out / "llm.safetensors");
  for (const char* f : kCopiedFiles) {
    fs::copy_file(src / f, out / f, fs::copy_options::overwrite_existing);
    m.files[f] = fs::file_size(out / f);
  }
  write_text_atomic((out / kManifestName).string(), manifest_to_json(m).dump(2) + "\n");
  return m;
}

EngineManifest load_engine_manifest(const std::string& dir, const RuntimeCaps& caps) {
  const fs::path path = fs::path(dir) / kManifestName;
  const std::string where = path.string();
  OMNIRT_CHECK(fs::is_regular_file(path), where,
               ": not found; is this an engine folder? Build one with omnirt build MODEL_DIR "
               "--out ",
               dir);
  json j;
  try {
    j = json::parse(read_bytes(where));
  } catch (const json::parse_error& e) {
    OMNIRT_FAIL(where, ": corrupt manifest (invalid JSON: ", e.what(),
                "); rebuild the engine with omnirt build");
  }
  OMNIRT_CHECK(j.is_object(), where, ": corrupt manifest (expected a JSON object, got ",
               j.type_name(), "); rebuild the engine with omnirt build");

  EngineManifest m;
  m.format_version = field<int>(j, "format_version", where);
  OMNIRT_CHECK(m.format_version == kEngineFormatVersion, where, ": engine format_version ",
               m.format_version, " is not supported by this omnirt (", version(),
               ", supports format_version ", kEngineFormatVersion,
               "); rebuild the engine with this omnirt build");
  m.omnirt_version = field<std::string>(j, "omnirt_version", where);
  m.omnirt_commit = field<std::string>(j, "omnirt_commit", where);
  m.built_at = field<std::string>(j, "built_at", where);
  const json source = field<json>(j, "source", where);
  m.source_path = field<std::string>(source, "path", where + " source");
  m.source_config_hash = field<std::string>(source, "config_fnv1a64", where + " source");
  m.source_files = field<std::map<std::string, uint64_t>>(source, "files", where + " source");
  const json prec = field<json>(j, "precisions", where);
  m.vision_precision = field<std::string>(prec, "vision", where + " precisions");
  m.llm_precision = field<std::string>(prec, "llm", where + " precisions");
  OMNIRT_CHECK(is_float_precision(m.vision_precision), where, ": unknown vision precision \"",
               m.vision_precision, "\" (expected fp32, fp16 or bf16)");
  try {
    parse_llm_precision(m.llm_precision, &m.group_size);
  } catch (const Error& e) {
    OMNIRT_FAIL(where, ": ", e.what());
  }
  const json g = field<json>(j, "group_size", where);
  const int64_t recorded_g = g.is_null() ? 0 : field<int64_t>(j, "group_size", where);
  OMNIRT_CHECK(recorded_g == m.group_size, where, ": group_size ", g.dump(),
               " does not match the LLM precision ", m.llm_precision);
  m.llm_other_dtype = field<std::string>(j, "llm_other_dtype", where);
  OMNIRT_CHECK(dtype_from_name(m.llm_other_dtype).has_value(), where,
               ": unknown llm_other_dtype \"", m.llm_other_dtype, "\"");
  m.gpu_arch = field<std::string>(j, "gpu_arch", where);
  int built_cc = 0;
  try {
    built_cc = parse_gpu_arch(m.gpu_arch);
  } catch (const Error& e) {
    OMNIRT_FAIL(where, ": ", e.what());
  }
  const json cal = field<json>(j, "calibration", where);
  OMNIRT_CHECK(cal.is_null() || cal.is_string() || cal.is_object(), where,
               ": field \"calibration\" has the wrong type (", cal.type_name(),
               "; expected null, a string or an object)");
  m.calibration = cal.is_null() ? "" : cal.is_string() ? cal.get<std::string>() : cal.dump();
  bool awq = false;
  parse_llm_precision(m.llm_precision, nullptr, &awq);
  OMNIRT_CHECK(!awq || cal.is_object(), where, ": an ", m.llm_precision,
               " engine must record its AWQ calibration (an object), got ", cal.dump(),
               "; rebuild the engine with omnirt build");
  m.files = field<std::map<std::string, uint64_t>>(j, "files", where);
  for (const char* required :
       {"config.json", "llm.safetensors", "vision.safetensors", "tokenizer.model"})
    OMNIRT_CHECK(m.files.count(required), where, ": the manifest does not list ", required);
  for (const auto& [name, size] : m.files) {
    const fs::path f = fs::path(dir) / name;
    OMNIRT_CHECK(fs::is_regular_file(f), "engine file ", f.string(), " listed in ", where,
                 " is missing; rebuild the engine with omnirt build");
    const uint64_t actual = fs::file_size(f);
    OMNIRT_CHECK(actual == size, "engine file ", f.string(), " has ", actual, " bytes but ", where,
                 " records ", size, " (modified or truncated); rebuild the engine");
  }

  if (caps.device == Device::CUDA) {
    const std::string here = "sm_" + std::to_string(caps.compute_capability);
    OMNIRT_CHECK(built_cc == caps.compute_capability, "engine ", dir, " was built for ", m.gpu_arch,
                 "; this GPU is ", here, ": rebuild with omnirt build ", m.source_path, " --out ",
                 dir, " --llm ", m.llm_precision, " --arch ", here);
  }
  return m;
}

}  // namespace omnirt::quant
