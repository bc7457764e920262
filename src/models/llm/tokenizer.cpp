#include "models/llm/tokenizer.h"

#include <sentencepiece_processor.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace omnirt::llm {

namespace {

constexpr std::string_view kSpaceSymbol = "\xE2\x96\x81";  // U+2581 '▁'
constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD
constexpr std::string_view kUnknownSurface = " \xE2\x81\x87 ";  // SentencePiece's " ⁇ "

// "<0xAB>" -> 0xAB, else -1.
int parse_byte_piece(const std::string& piece) {
  if (piece.size() != 6 || piece.compare(0, 3, "<0x") != 0 || piece[5] != '>') return -1;
  int v = 0;
  for (int i = 3; i < 5; ++i) {
    char c = piece[i];
    int d = (c >= '0' && c <= '9')   ? c - '0'
            : (c >= 'A' && c <= 'F') ? c - 'A' + 10
            : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                                     : -1;
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}

std::string replace_space_symbol(std::string_view piece) {
  std::string out;
  out.reserve(piece.size());
  size_t i = 0;
  while (i < piece.size()) {
    if (piece.compare(i, kSpaceSymbol.size(), kSpaceSymbol) == 0) {
      out.push_back(' ');
      i += kSpaceSymbol.size();
    } else {
      out.push_back(piece[i++]);
    }
  }
  return out;
}

bool is_trail_byte(unsigned char c) { return (c & 0xC0) == 0x80; }

// Mirrors SentencePiece's UTF-8 validity rule for byte-fallback runs: returns the length of the
// complete valid character at the start of `s`, 0 when `s` is a proper prefix of a character that
// may still become valid, or -1 when the first byte can never start a valid character here.
int utf8_char_status(std::string_view s) {
  const auto* b = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  if (n == 0) return 0;
  if (b[0] < 0x80) return 1;
  int need;
  uint32_t cp;
  if ((b[0] & 0xE0) == 0xC0) {
    need = 2;
    cp = b[0] & 0x1F;
  } else if ((b[0] & 0xF0) == 0xE0) {
    need = 3;
    cp = b[0] & 0x0F;
  } else if ((b[0] & 0xF8) == 0xF0) {
    need = 4;
    cp = b[0] & 0x07;
  } else {
    return -1;
  }
  for (int i = 1; i < need; ++i) {
    if (static_cast<size_t>(i) >= n) return 0;  // incomplete but consistent so far
    if (!is_trail_byte(b[i])) return -1;
    cp = (cp << 6) | (b[i] & 0x3F);
  }
  const uint32_t min_cp = need == 2 ? 0x80 : need == 3 ? 0x800 : 0x10000;
  const bool valid_cp = cp < 0xD800 || (cp >= 0xE000 && cp <= 0x10FFFF);
  return (cp >= min_cp && valid_cp) ? need : -1;
}

}  // namespace

Tokenizer::Tokenizer() : sp_(std::make_unique<sentencepiece::SentencePieceProcessor>()) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::load(const std::string& model_path) {
  OMNIRT_CHECK(std::filesystem::exists(model_path), "tokenizer model ", model_path,
               ": file not found");
  std::ifstream f(model_path, std::ios::binary);
  OMNIRT_CHECK(f.good(), "tokenizer model ", model_path, ": cannot open the file");
  std::ostringstream buf;
  buf << f.rdbuf();
  return from_serialized(buf.str(), model_path);
}

Tokenizer Tokenizer::from_serialized(std::string_view serialized, const std::string& what) {
  OMNIRT_CHECK(!serialized.empty(), "tokenizer model ", what, ": file is empty");
  Tokenizer t;
  t.source_ = what;
  auto status = t.sp_->LoadFromSerializedProto(serialized);
  OMNIRT_CHECK(status.ok(), "tokenizer model ", what,
               ": not a valid SentencePiece model (", status.ToString(), ")");
  OMNIRT_CHECK(t.sp_->GetPieceSize() > 0, "tokenizer model ", what, ": has no pieces");
  t.init_after_load();
  return t;
}

void Tokenizer::init_after_load() {
  const int n = sp_->GetPieceSize();
  byte_of_id_.assign(n, -1);
  for (int id = 0; id < n; ++id) {
    if (sp_->IsByte(id)) byte_of_id_[id] = static_cast<int16_t>(parse_byte_piece(sp_->IdToPiece(id)));
  }
  // Whether decode drops a leading '▁' depends on the model's normalizer settings, which the
  // public API does not expose: ask the decoder itself with the first normal '▁'-piece.
  for (int id = 0; id < n; ++id) {
    if (is_special(id) || byte_of_id_[id] >= 0) continue;
    const std::string piece = sp_->IdToPiece(id);
    if (piece.size() > kSpaceSymbol.size() && piece.compare(0, kSpaceSymbol.size(), kSpaceSymbol) == 0) {
      std::string text;
      if (sp_->Decode(std::vector<int>{id}, &text).ok()) {
        strips_leading_space_ = text.empty() || text[0] != ' ';
      }
      break;
    }
  }
}

void Tokenizer::check_id(int32_t id, const char* what) const {
  OMNIRT_CHECK(id >= 0 && id < vocab_size(), what, ": token id ", id, " is outside the vocabulary [0, ",
               vocab_size(), ") of tokenizer ", source_);
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_bos) const {
  std::vector<int> ids;
  auto status = sp_->Encode(text, &ids);
  OMNIRT_CHECK(status.ok(), "tokenizer ", source_, ": encoding failed (", status.ToString(), ")");
  std::vector<int32_t> out;
  out.reserve(ids.size() + 1);
  if (add_bos) {
    OMNIRT_CHECK(bos_id() >= 0, "tokenizer ", source_, " has no BOS piece but add_bos was requested");
    out.push_back(bos_id());
  }
  out.insert(out.end(), ids.begin(), ids.end());
  return out;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  std::vector<int> kept;
  kept.reserve(ids.size());
  for (int32_t id : ids) {
    check_id(id, "decode");
    if (skip_special && is_special(id)) continue;
    kept.push_back(id);
  }
  std::string text;
  auto status = sp_->Decode(kept, &text);
  OMNIRT_CHECK(status.ok(), "tokenizer ", source_, ": decoding failed (", status.ToString(), ")");
  return text;
}

std::string Tokenizer::id_to_piece(int32_t id) const {
  check_id(id, "id_to_piece");
  return sp_->IdToPiece(id);
}

int Tokenizer::vocab_size() const { return sp_->GetPieceSize(); }
int32_t Tokenizer::bos_id() const { return sp_->bos_id(); }
int32_t Tokenizer::eos_id() const { return sp_->eos_id(); }
int32_t Tokenizer::unk_id() const { return sp_->unk_id(); }

bool Tokenizer::is_special(int32_t id) const {
  return sp_->IsControl(id) || sp_->IsUnknown(id) || sp_->IsUnused(id);
}

int Tokenizer::byte_value(int32_t id) const {
  if (id < 0 || id >= static_cast<int32_t>(byte_of_id_.size())) return -1;
  return byte_of_id_[id];
}

void Tokenizer::expect_vocab(int model_vocab_size) const {
  OMNIRT_CHECK(vocab_size() == model_vocab_size, source_, " has ", vocab_size(),
               " pieces but the LLM's vocab_size is ", model_vocab_size,
               " (tokenizer and weights do not belong together)");
}

// ---- StreamingDetokenizer ----------------------------------------------------------------

StreamingDetokenizer::StreamingDetokenizer(const Tokenizer& tokenizer, bool skip_special)
    : tok_(&tokenizer), skip_special_(skip_special) {}

void StreamingDetokenizer::reset() {
  pending_bytes_.clear();
  at_start_ = true;
  text_.clear();
}

std::string StreamingDetokenizer::emit(std::string s) {
  if (!s.empty()) at_start_ = false;
  text_ += s;
  return s;
}

// Emits the complete characters at the front of the pending byte run. Invalid bytes become one
// U+FFFD each (SentencePiece's rule). Without final_flush, an incomplete but still possibly valid
// tail is kept for the next token.
std::string StreamingDetokenizer::drain_bytes(bool final_flush) {
  std::string out;
  size_t pos = 0;
  while (pos < pending_bytes_.size()) {
    int status = utf8_char_status(std::string_view(pending_bytes_).substr(pos));
    if (status > 0) {
      out.append(pending_bytes_, pos, status);
      pos += status;
    } else if (status < 0 || final_flush) {
      out += kReplacementChar;
      pos += 1;
    } else {
      break;  // wait for the rest of the character
    }
  }
  pending_bytes_.erase(0, pos);
  return out;
}

std::string StreamingDetokenizer::push(int32_t id) {
  OMNIRT_CHECK(id >= 0 && id < tok_->vocab_size(), "streaming detokenizer: token id ", id,
               " is outside the vocabulary [0, ", tok_->vocab_size(), ")");
  const int byte = tok_->byte_value(id);
  if (byte >= 0) {
    pending_bytes_.push_back(static_cast<char>(byte));
    return emit(drain_bytes(false));
  }
  // Skipped specials are removed before decoding (HF skip_special_tokens), so they do not end a
  // byte run; any other non-byte piece does, and whatever is still pending is invalid then.
  if (skip_special_ && tok_->is_special(id)) return "";
  std::string out = drain_bytes(true);
  if (!out.empty()) at_start_ = false;
  if (tok_->is_special(id)) {
    if (!skip_special_ && id == tok_->unk_id()) out += kUnknownSurface;
    return emit(std::move(out));
  }
  const std::string piece = tok_->id_to_piece(id);
  std::string_view piece_sv = piece;
  if (at_start_ && out.empty() && tok_->strips_leading_space() &&
      piece_sv.compare(0, kSpaceSymbol.size(), kSpaceSymbol) == 0) {
    piece_sv.remove_prefix(kSpaceSymbol.size());
  }
  out += replace_space_symbol(piece_sv);
  return emit(std::move(out));
}

std::string StreamingDetokenizer::finish() { return emit(drain_bytes(true)); }

}  // namespace omnirt::llm
