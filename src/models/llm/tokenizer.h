// The LLM's text tokenizer: a thin wrapper over the SentencePiece C++ library, plus a streaming
// detokenizer for printing tokens as they are generated.
//
// TinyLlama uses the LLaMA-2 SentencePiece BPE model (32000 pieces, byte fallback, split digits,
// unk/bos/eos = 0/1/2). OmniDrive tokenises with the *slow* HF LLaMA tokenizer in legacy mode,
// which for text without special-token strings is exactly `[bos] + sp.Encode(text)`; decoding
// with `skip_special_tokens=True` is `sp.Decode(ids without bos/eos/unk)`. This class reproduces
// those two behaviours (spec §4.3).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace omnirt::llm {

class Tokenizer {
 public:
  // Loads a SentencePiece `tokenizer.model`. Throws omnirt::Error naming the file when it is
  // missing, unreadable or not a SentencePiece model.
  static Tokenizer load(const std::string& model_path);
  // Same from the bytes of a serialized model (`what` names the source in error messages).
  static Tokenizer from_serialized(std::string_view serialized, const std::string& what);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // Token ids of `text` (SentencePiece's own dummy-prefix handling), with `bos_id()` in front
  // when add_bos is true.
  std::vector<int32_t> encode(std::string_view text, bool add_bos) const;
  // Text of `ids`. With skip_special (HF's skip_special_tokens) bos/eos/unk/control ids are
  // dropped first. Ids outside [0, vocab_size) (e.g. the image placeholder -200) are an error.
  std::string decode(const std::vector<int32_t>& ids, bool skip_special = true) const;
  // The piece string, e.g. "▁the", "<0xE2>", "<s>". Throws on an out-of-range id.
  std::string id_to_piece(int32_t id) const;

  int vocab_size() const;
  int32_t bos_id() const;
  int32_t eos_id() const;
  int32_t unk_id() const;
  // Pieces that are never text: control (<s>, </s>), unknown, unused.
  bool is_special(int32_t id) const;
  // Byte-fallback piece "<0xNN>": returns NN in [0, 255], else -1.
  int byte_value(int32_t id) const;
  // True when SentencePiece drops the leading '▁' of the first text piece on decode
  // (add_dummy_prefix / remove_extra_whitespaces models such as LLaMA's).
  bool strips_leading_space() const { return strips_leading_space_; }
  const std::string& source() const { return source_; }

  // Errors unless the tokenizer has exactly `model_vocab_size` pieces, e.g.
  // "tokenizer.model has 512 pieces but the LLM's vocab_size is 32000".
  void expect_vocab(int model_vocab_size) const;

 private:
  Tokenizer();
  void check_id(int32_t id, const char* what) const;
  void init_after_load();

  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
  std::string source_;
  std::vector<int16_t> byte_of_id_;  // byte value per id, -1 for non-byte pieces
  bool strips_leading_space_ = true;
};

// Turns ids arriving one at a time into text, emitting only complete UTF-8 characters.
//
// The concatenation of everything returned by push() and finish() equals
// `tokenizer.decode(all_ids, skip_special)`: byte-fallback pieces are buffered until they form a
// complete character (a 3-byte "°"/"€" never comes out half), invalid byte sequences become
// U+FFFD exactly as SentencePiece's decoder does, and the leading '▁' of the first text piece is
// dropped like SentencePiece does.
class StreamingDetokenizer {
 public:
  explicit StreamingDetokenizer(const Tokenizer& tokenizer, bool skip_special = true);
  // Feeds one id; returns the text completed by it (possibly empty).
  std::string push(int32_t id);
  // End of the stream: flushes any incomplete byte sequence (as U+FFFD per byte).
  std::string finish();
  // Everything emitted so far.
  const std::string& text() const { return text_; }
  void reset();

 private:
  std::string drain_bytes(bool final_flush);
  std::string emit(std::string s);

  const Tokenizer* tok_;
  bool skip_special_;
  std::string pending_bytes_;  // byte-fallback bytes not yet forming a complete character
  bool at_start_ = true;       // no text produced yet: the next '▁' prefix is dropped
  std::string text_;
};

}  // namespace omnirt::llm
