#include "core/distill/recipe.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/common/error.h"
#include "core/common/paths.h"

namespace hedgelab::distill {

using json = nlohmann::json;

namespace {

const std::vector<std::string> kDevices = {"cpu", "cuda"};
const std::vector<std::string> kDtypes = {"float32", "bfloat16"};
const std::vector<std::string> kFeatureMaps = {"per_half_softmax", "joint_softmax", "raw_exp"};
const std::vector<std::string> kNormalizations = {"denominator", "gated_rmsnorm"};
const std::vector<std::string> kKdTargets = {"teacher", "stage1"};
const std::vector<std::string> kRuns = {"teacher", "hedgehog", "direct", "hedgemamba"};
const std::vector<std::string> kAblations = {
    "no_gate", "no_conv", "no_selective_decay", "split_10_90", "split_25_75", "split_50_50", "split_75_25"};
const std::vector<std::string> kTrainable = {"feature_maps", "output_gain", "qkv",       "dense",
                                             "mlp",          "norms",       "embeddings"};

constexpr int64_t kMaxTokens = 1'000'000'000'000'000;  // 10^15: far beyond any budget, short of overflow
constexpr int64_t kMaxSteps = 1'000'000'000;
constexpr double kInf = std::numeric_limits<double>::infinity();

std::string format_number(double x) {
  std::ostringstream out;
  out.precision(12);
  out << x;
  return out.str();
}

std::string quoted_list(const std::vector<std::string>& values) {
  std::string out;
  for (const auto& v : values)
    out += (out.empty() ? "\"" : ", \"") + v + "\"";
  return out;
}

std::string plain_list(const std::vector<std::string>& values) {
  std::string out;
  for (const auto& v : values)
    out += (out.empty() ? "" : ", ") + v;
  return out;
}

// JSON value as it appears in an error, kept on one line and short.
std::string shown(const json& j) {
  std::string s = j.dump();
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

// Constraints: each knows how to describe itself ("a number > 0") and to test a value.
struct IntRange {
  int64_t lo, hi;
  std::string note;  // why a bound depends on another field, e.g. "(stage1.tokens is 0)"
  std::string text() const {
    std::string t = hi == std::numeric_limits<int64_t>::max()
                        ? "an integer >= " + std::to_string(lo)
                        : "an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
    return note.empty() ? t : t + " " + note;
  }
  bool ok(int64_t v) const { return v >= lo && v <= hi; }
};

struct NumRange {
  double lo;
  bool lo_open;
  double hi;
  bool hi_open;
  std::string note;
  std::string text() const {
    std::string t;
    if (hi == kInf)
      t = std::string("a number ") + (lo_open ? "> " : ">= ") + format_number(lo);
    else
      t = std::string("a number in ") + (lo_open ? "(" : "[") + format_number(lo) + ", " + format_number(hi) +
          (hi_open ? ")" : "]");
    return note.empty() ? t : t + " " + note;
  }
  bool ok(double v) const {
    return std::isfinite(v) && (lo_open ? v > lo : v >= lo) && (hi_open ? v < hi : v <= hi);
  }
};

NumRange closed(double lo, double hi, std::string note = {}) {
  return {lo, false, hi, false, std::move(note)};
}
NumRange above(double lo, double hi = kInf) {
  return {lo, true, hi, false, {}};
}

struct Choice {
  const std::vector<std::string>* values;
  std::string text() const { return "one of " + quoted_list(*values); }
  bool ok(const std::string& v) const {
    return std::find(values->begin(), values->end(), v) != values->end();
  }
};

struct Text {
  bool allow_empty;
  std::string note;
  std::string text() const { return note.empty() ? "a non-empty string" : "a non-empty string " + note; }
};

struct Subset {
  const std::vector<std::string>* values;
  bool allow_empty;
  std::string text() const {
    return std::string("a list of distinct values from ") + quoted_list(*values) +
           (allow_empty ? "" : " (at least one)");
  }
};

std::string join_path(const std::string& section, const std::string& key) {
  return section.empty() ? key : section + "." + key;
}

// The single table of the recipe's fields: every visitor (reader, writer, validator) walks it, so the JSON
// names, the ranges and the error texts cannot drift apart. `C` is RecipeConfig or const RecipeConfig.
template <class C, class V>
void visit_recipe(C& c, V& v) {
  v.text("name", c.name, Text{false, {}});
  v.text("description", c.description, Text{true, {}});
  v.text("teacher", c.teacher, Text{false, {}});
  v.text("corpus", c.corpus, Text{false, {}});
  v.integer("seed", c.seed, IntRange{0, std::numeric_limits<int64_t>::max(), {}});
  v.choice("device", c.device, Choice{&kDevices});
  v.choice("dtype", c.dtype, Choice{&kDtypes});
  v.integer("threads", c.threads, IntRange{0, 1024, {}});
  v.boolean("activation_checkpointing", c.activation_checkpointing);

  v.begin("data");
  v.integer("context", c.data.context, IntRange{2, 1 << 20, {}});
  v.integer("batch_size", c.data.batch_size, IntRange{1, 1 << 16, {}});
  v.integer("accumulation", c.data.accumulation, IntRange{1, 1 << 16, {}});
  v.number("heldout_fraction", c.data.heldout_fraction, NumRange{0.0, true, 0.5, false, {}});
  v.integer("eval_every", c.data.eval_every, IntRange{0, kMaxSteps, {}});
  v.integer("eval_windows", c.data.eval_windows, IntRange{1, 1 << 20, {}});
  v.integer("probe_every", c.data.probe_every, IntRange{0, kMaxSteps, {}});
  v.text("probe_text", c.data.probe_text,
         Text{c.data.probe_every == 0, c.data.probe_every == 0 ? "" : "(data.probe_every > 0)"});
  v.integer("checkpoint_every", c.data.checkpoint_every, IntRange{0, kMaxSteps, {}});
  v.end();

  v.begin("model");
  v.choice("feature_map", c.model.feature_map, Choice{&kFeatureMaps});
  v.integer("feature_dim", c.model.feature_dim, IntRange{0, 4096, {}});
  v.integer("chunk", c.model.chunk, IntRange{1, 4096, {}});
  v.boolean("rotary", c.model.rotary);
  v.integer("conv_width", c.model.conv_width, IntRange{1, 64, {}});
  v.choice("normalization", c.model.normalization, Choice{&kNormalizations});
  v.boolean("gate", c.model.gate);
  v.boolean("conv", c.model.conv);
  v.boolean("selective_decay", c.model.selective_decay);
  v.number("eps", c.model.eps, NumRange{0.0, true, 0.1, false, {}});
  v.end();

  v.begin("stage1");
  v.integer("tokens", c.stage1.tokens, IntRange{0, kMaxTokens, {}});
  v.number("lr", c.stage1.lr, NumRange{0.0, true, 1.0, false, {}});
  v.number("min_lr", c.stage1.min_lr, closed(0.0, c.stage1.lr, "(at most stage1.lr)"));
  v.integer("warmup_steps", c.stage1.warmup_steps, IntRange{0, kMaxSteps, {}});
  v.number("weight_decay", c.stage1.weight_decay, closed(0.0, 1.0));
  v.number("grad_clip", c.stage1.grad_clip, closed(0.0, 1e6));
  v.number("attn_weight_loss", c.stage1.attn_weight_loss, closed(0.0, 1e3));
  v.subset("trainable", c.stage1.trainable, Subset{&kTrainable, false});
  v.end();

  v.begin("stage2");
  v.integer(
      "tokens", c.stage2.tokens,
      c.stage1.tokens == 0 ? IntRange{1, kMaxTokens, "(stage1.tokens is 0)"} : IntRange{0, kMaxTokens, {}});
  v.number("lr", c.stage2.lr, NumRange{0.0, true, 1.0, false, {}});
  v.number("min_lr", c.stage2.min_lr, closed(0.0, c.stage2.lr, "(at most stage2.lr)"));
  v.integer("warmup_steps", c.stage2.warmup_steps, IntRange{0, kMaxSteps, {}});
  v.number("weight_decay", c.stage2.weight_decay, closed(0.0, 1.0));
  v.number("grad_clip", c.stage2.grad_clip, closed(0.0, 1e6));
  v.number("ce_weight", c.stage2.ce_weight, closed(0.0, 1e3));
  v.number("kd_weight", c.stage2.kd_weight,
           c.stage2.ce_weight == 0.0 ? NumRange{0.0, true, 1e3, false, "(stage2.ce_weight is 0)"}
                                     : closed(0.0, 1e3));
  v.number("kd_temperature", c.stage2.kd_temperature, above(0.0));
  v.number("align_weight", c.stage2.align_weight, closed(0.0, 1e3));
  v.choice("kd_target", c.stage2.kd_target, Choice{&kKdTargets});
  v.end();

  v.begin("comparison");
  v.subset("runs", c.comparison.runs, Subset{&kRuns, false});
  v.subset("ablations", c.comparison.ablations, Subset{&kAblations, true});
  v.end();
}

// Reads JSON into a RecipeConfig: type checks here, ranges in the Validator afterwards; keys not visited are
// unknown and refused with the section's valid keys.
class Reader {
 public:
  Reader(const json& root, std::string source) : source_(std::move(source)) {
    if (!root.is_object()) throw Error(source_, "expected a JSON object, got " + shown(root));
    frames_.push_back({&root, "", {}});
  }
  void begin(const std::string& section) {
    Frame& parent = frames_.back();
    parent.known.push_back(section);
    const json* child = nullptr;
    if (auto it = parent.obj->find(section); it != parent.obj->end() && !it->is_null()) {
      if (!it->is_object())
        throw Error(source_ + ": " + join_path(parent.path, section),
                    "expected an object, got " + shown(*it));
      child = &*it;
    }
    frames_.push_back({child, join_path(parent.path, section), {}});
  }
  void end() {
    check_unknown(frames_.back());
    frames_.pop_back();
  }
  void finish() { check_unknown(frames_.back()); }

  void integer(const char* key, int64_t& out, const IntRange& range) {
    if (const json* j = find(key)) {
      // 3e8 parses as a float in JSON; accept it when it is a whole number in range of int64.
      if (j->is_number_integer()) {
        out = j->get<int64_t>();
      } else if (j->is_number_float() && std::isfinite(j->get<double>()) &&
                 j->get<double>() == std::floor(j->get<double>()) && std::abs(j->get<double>()) < 9.2e18) {
        out = static_cast<int64_t>(j->get<double>());
      } else {
        fail(key, range.text(), *j);
      }
    }
  }
  void number(const char* key, double& out, const NumRange& range) {
    if (const json* j = find(key)) {
      if (!j->is_number()) fail(key, range.text(), *j);
      out = j->get<double>();
    }
  }
  void boolean(const char* key, bool& out) {
    if (const json* j = find(key)) {
      if (!j->is_boolean()) fail(key, "true or false", *j);
      out = j->get<bool>();
    }
  }
  void text(const char* key, std::string& out, const Text& t) {
    if (const json* j = find(key)) {
      if (!j->is_string()) fail(key, "a string", *j);
      out = j->get<std::string>();
    }
  }
  void choice(const char* key, std::string& out, const Choice& c) {
    if (const json* j = find(key)) {
      if (!j->is_string()) fail(key, c.text(), *j);
      out = j->get<std::string>();
    }
  }
  void subset(const char* key, std::vector<std::string>& out, const Subset& s) {
    if (const json* j = find(key)) {
      if (!j->is_array()) fail(key, s.text(), *j);
      out.clear();
      for (size_t i = 0; i < j->size(); ++i) {
        if (!(*j)[i].is_string())
          fail(std::string(key) + "[" + std::to_string(i) + "]", Choice{s.values}.text(), (*j)[i]);
        out.push_back((*j)[i].get<std::string>());
      }
    }
  }

 private:
  struct Frame {
    const json* obj;  // null when the section is absent: all its fields keep their defaults
    std::string path;
    std::vector<std::string> known;
  };
  const json* find(const char* key) {
    Frame& f = frames_.back();
    f.known.push_back(key);
    if (!f.obj) return nullptr;
    auto it = f.obj->find(key);
    return it == f.obj->end() || it->is_null() ? nullptr : &*it;
  }
  [[noreturn]] void fail(const std::string& key, const std::string& expected, const json& got) {
    throw Error(source_ + ": " + join_path(frames_.back().path, key),
                "expected " + expected + ", got " + shown(got));
  }
  void check_unknown(const Frame& f) {
    if (!f.obj) return;
    for (auto it = f.obj->begin(); it != f.obj->end(); ++it) {
      if (std::find(f.known.begin(), f.known.end(), it.key()) == f.known.end())
        throw Error(source_ + ": " + join_path(f.path, it.key()),
                    "unknown key; valid keys " +
                        (f.path.empty() ? std::string("at the top level") : "of " + f.path) + ": " +
                        plain_list(f.known));
    }
  }
  std::string source_;
  std::vector<Frame> frames_;
};

class Writer {
 public:
  json root = json::object();
  void begin(const std::string& section) {
    stack_.push_back(json::object());
    names_.push_back(section);
  }
  void end() {
    json done = std::move(stack_.back());
    stack_.pop_back();
    current()[names_.back()] = std::move(done);
    names_.pop_back();
  }
  template <class T, class R>
  void integer(const char* key, const T& value, const R&) {
    current()[key] = value;
  }
  template <class T, class R>
  void number(const char* key, const T& value, const R&) {
    current()[key] = value;
  }
  void boolean(const char* key, bool value) { current()[key] = value; }
  template <class R>
  void text(const char* key, const std::string& value, const R&) {
    current()[key] = value;
  }
  template <class R>
  void choice(const char* key, const std::string& value, const R&) {
    current()[key] = value;
  }
  template <class R>
  void subset(const char* key, const std::vector<std::string>& value, const R&) {
    current()[key] = value;
  }

 private:
  json& current() { return stack_.empty() ? root : stack_.back(); }
  std::vector<json> stack_;
  std::vector<std::string> names_;
};

class Validator {
 public:
  explicit Validator(std::string source) : source_(std::move(source)) {}
  void begin(const std::string& section) { path_ = section; }
  void end() { path_.clear(); }
  void integer(const char* key, int64_t value, const IntRange& r) {
    if (!r.ok(value)) fail(key, r.text(), std::to_string(value));
  }
  void number(const char* key, double value, const NumRange& r) {
    if (!r.ok(value)) fail(key, r.text(), format_number(value));
  }
  void boolean(const char*, bool) {}
  void text(const char* key, const std::string& value, const Text& t) {
    if (!t.allow_empty && value.empty()) fail(key, t.text(), "\"\"");
    if (value.find('\0') != std::string::npos)
      fail(key, "a string without NUL characters", shown(json(value)));
  }
  void choice(const char* key, const std::string& value, const Choice& c) {
    if (!c.ok(value)) fail(key, c.text(), shown(json(value)));
  }
  void subset(const char* key, const std::vector<std::string>& values, const Subset& s) {
    if (values.empty() && !s.allow_empty) fail(key, s.text(), "[]");
    std::set<std::string> seen;
    for (size_t i = 0; i < values.size(); ++i) {
      const std::string at = std::string(key) + "[" + std::to_string(i) + "]";
      if (!Choice{s.values}.ok(values[i])) fail(at, Choice{s.values}.text(), shown(json(values[i])));
      if (!seen.insert(values[i]).second) fail(at, "each value once", shown(json(values[i])) + " again");
    }
  }

 private:
  [[noreturn]] void fail(const std::string& key, const std::string& expected, const std::string& got) {
    throw Error(source_ + ": " + join_path(path_, key), "expected " + expected + ", got " + got);
  }
  std::string source_;
  std::string path_;
};

std::string human_tokens(int64_t n) {
  std::ostringstream out;
  out.precision(3);
  if (n >= 1'000'000'000)
    out << static_cast<double>(n) / 1e9 << "B";
  else if (n >= 1'000'000)
    out << static_cast<double>(n) / 1e6 << "M";
  else if (n >= 1'000)
    out << static_cast<double>(n) / 1e3 << "K";
  else
    out << n;
  return out.str();
}

json read_json_file(const std::filesystem::path& path, const std::string& source) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(source, "cannot be read");
  try {
    return json::parse(in);
  } catch (const json::parse_error& e) {
    throw Error(source, std::string("not valid JSON: ") + e.what());
  }
}

train::WarmupCosine schedule_for(double lr, double min_lr, int64_t warmup, int64_t steps) {
  train::WarmupCosine s;
  s.peak_lr = lr;
  s.min_lr = min_lr;
  s.total_steps = std::max<int64_t>(steps, 1);
  s.warmup_steps = std::min(warmup, s.total_steps);
  return s;
}

}  // namespace

RecipeConfig RecipeConfig::from_json(const json& j, const std::string& source) {
  RecipeConfig c;
  Reader reader(j, source);
  visit_recipe(c, reader);
  reader.finish();
  c.validate(source);
  return c;
}

json RecipeConfig::to_json() const {
  Writer w;
  visit_recipe(*this, w);
  return std::move(w.root);
}

void RecipeConfig::validate(const std::string& source) const {
  Validator v(source);
  visit_recipe(*this, v);
  if (dtype == "bfloat16" && device != "cuda")
    throw Error(source + ": dtype", "expected \"float32\" on device \"" + device +
                                        "\" (\"bfloat16\" is CUDA autocast), got \"bfloat16\"");
}

int64_t steps_for_tokens(int64_t tokens, const DataConfig& data) {
  const int64_t per_step = data.batch_size * data.accumulation * data.context;
  if (tokens <= 0 || per_step <= 0) return 0;
  return (tokens + per_step - 1) / per_step;
}

int64_t RecipeConfig::tokens_per_step() const {
  return data.batch_size * data.accumulation * data.context;
}
int64_t RecipeConfig::stage1_steps() const {
  return steps_for_tokens(stage1.tokens, data);
}
int64_t RecipeConfig::stage2_steps() const {
  return steps_for_tokens(stage2.tokens, data);
}

train::WarmupCosine RecipeConfig::stage1_schedule() const {
  return schedule_for(stage1.lr, stage1.min_lr, stage1.warmup_steps, stage1_steps());
}
train::WarmupCosine RecipeConfig::stage2_schedule() const {
  return schedule_for(stage2.lr, stage2.min_lr, stage2.warmup_steps, stage2_steps());
}

std::string RecipeConfig::describe() const {
  std::ostringstream out;
  out << "Recipe \"" << name << "\"";
  if (!description.empty()) out << " (" << description << ")";
  out << ": teacher " << teacher << " on corpus " << corpus << ", " << device << "/" << dtype << ", seed "
      << seed << ". Windows of " << data.context << " tokens, " << data.batch_size << " x "
      << data.accumulation << " per step (" << human_tokens(tokens_per_step())
      << " tokens). Stage 1 (Hedgehog, layer-wise cosine"
      << (stage1.attn_weight_loss > 0 ? " + " + format_number(stage1.attn_weight_loss) + " x attention CE"
                                      : "")
      << "): " << human_tokens(stage1.tokens) << " tokens = " << stage1_steps() << " steps at lr "
      << format_number(stage1.lr) << ", training " << plain_list(stage1.trainable)
      << ". Stage 2 (HedgeMamba, " << format_number(stage2.ce_weight) << " x CE + "
      << format_number(stage2.kd_weight) << " x KD at tau " << format_number(stage2.kd_temperature)
      << " from the " << stage2.kd_target
      << (stage2.align_weight > 0 ? " + " + format_number(stage2.align_weight) + " x alignment" : "")
      << "): " << human_tokens(stage2.tokens) << " tokens = " << stage2_steps() << " steps at lr "
      << format_number(stage2.lr) << ". Student: " << model.feature_map << " feature maps (m = "
      << (model.feature_dim == 0 ? std::string("head size") : std::to_string(model.feature_dim)) << "), "
      << model.normalization << " normalization, gate " << (model.gate ? "on" : "off") << ", conv "
      << (model.conv ? "on" : "off") << ", selective decay " << (model.selective_decay ? "on" : "off") << ".";
  return out.str();
}

const std::vector<std::string>& valid_runs() {
  return kRuns;
}
const std::vector<std::string>& valid_ablations() {
  return kAblations;
}
const std::vector<std::string>& valid_trainable() {
  return kTrainable;
}

std::vector<std::string> available_presets() {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(resources_dir() / "presets", ec))
    if (entry.path().extension() == ".json") names.push_back(entry.path().stem().string());
  std::sort(names.begin(), names.end());
  return names;
}

RecipeConfig load_preset(const std::string& name_or_path) {
  const bool is_path = name_or_path.find('/') != std::string::npos ||
                       (name_or_path.size() > 5 && name_or_path.substr(name_or_path.size() - 5) == ".json");
  if (is_path) return RecipeConfig::from_json(read_json_file(name_or_path, name_or_path), name_or_path);
  const auto names = available_presets();
  if (std::find(names.begin(), names.end(), name_or_path) == names.end())
    throw Error("preset \"" + name_or_path + "\"",
                "unknown; available: " + (names.empty() ? std::string("none") : plain_list(names)) +
                    " (or a path to a .json file)");
  const std::string source = "presets/" + name_or_path + ".json";
  return RecipeConfig::from_json(
      read_json_file(resources_dir() / "presets" / (name_or_path + ".json"), source), source);
}

void apply_overrides(RecipeConfig& config, const json& overrides, const std::string& source) {
  if (!overrides.is_object())
    throw Error(source, "expected a JSON object of overrides, got " + shown(overrides));
  json merged = config.to_json();
  merged.merge_patch(overrides);
  config =
      RecipeConfig::from_json(merged, source);  // assigned only when valid: a bad override changes nothing
}

RecipeConfig with_ablation(const RecipeConfig& config, const std::string& ablation) {
  RecipeConfig c = config;
  if (ablation == "no_gate") {
    c.model.gate = false;
  } else if (ablation == "no_conv") {
    c.model.conv = false;
  } else if (ablation == "no_selective_decay") {
    c.model.selective_decay = false;
  } else if (ablation.rfind("split_", 0) == 0 &&
             std::find(kAblations.begin(), kAblations.end(), ablation) != kAblations.end()) {
    const int64_t stage1_share = std::stoll(ablation.substr(6, 2));  // "split_25_75" → 25
    const int64_t total = c.stage1.tokens + c.stage2.tokens;
    c.stage1.tokens = total / 100 * stage1_share + total % 100 * stage1_share / 100;
    c.stage2.tokens = total - c.stage1.tokens;
  } else {
    throw Error("ablation", "expected one of " + quoted_list(kAblations) + ", got \"" + ablation + "\"");
  }
  c.name += "+" + ablation;
  c.validate("ablation " + ablation);
  return c;
}

}  // namespace hedgelab::distill
