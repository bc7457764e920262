// Test helper: a small SentencePiece model trained in the test itself (LLaMA-like settings: BPE,
// byte fallback, split digits, unk/bos/eos = 0/1/2, no pad, identity normalisation), so the LLM
// text tests do not depend on any downloaded or Python-generated file.
#pragma once

#include <sentencepiece_trainer.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "core/error.h"
#include "models/llm/tokenizer.h"

namespace omnirt::testing {

inline std::string llm_test_corpus() {
  // English driving-flavoured text; deliberately no 'ü', '°', '€' or emoji so those characters
  // are only representable through byte-fallback pieces.
  const char* lines[] = {
      "A chat between a curious user and an artificial intelligence assistant.",
      "The assistant gives helpful, detailed, and polite answers to the user's questions.",
      "USER: You are driving in boston. Please provide the planning trajectory for the ego car.",
      "ASSISTANT: Here is the planning trajectory [PT, (+4.35, 0.0), (+8.72, -0.05)].",
      "You are driving in singapore. The road ahead is clear and the light is green.",
      "There is a pedestrian on the left side of the road near the crossing.",
      "The car in front of you is slowing down, keep a safe distance from it.",
      "Please describe the current driving conditions based on the images provided.",
      "What objects are there near the position (+12.50, -3.25)? A truck and a bus.",
      "The weather is sunny, the temperature is 30 degrees and the road is dry.",
  };
  std::string corpus;
  for (int rep = 0; rep < 20; ++rep) {
    for (const char* l : lines) {
      corpus += l;
      corpus += '\n';
    }
  }
  return corpus;
}

// Trains (once per process) and returns the path of the test tokenizer.model.
inline const std::string& llm_test_tokenizer_path() {
  static const std::string path = [] {
    namespace fs = std::filesystem;
    fs::path dir = fs::temp_directory_path() / ("omnirt_llm_test_" + std::to_string(::getpid()));
    fs::create_directories(dir);
    const fs::path corpus = dir / "corpus.txt";
    std::ofstream(corpus) << llm_test_corpus();
    const std::string prefix = (dir / "tok").string();
    const std::string args = "--input=" + corpus.string() + " --model_prefix=" + prefix +
                             " --model_type=bpe --vocab_size=400 --byte_fallback=true"
                             " --split_digits=true --unk_id=0 --bos_id=1 --eos_id=2 --pad_id=-1"
                             " --character_coverage=1.0 --normalization_rule_name=identity"
                             " --remove_extra_whitespaces=false --add_dummy_prefix=true"
                             " --allow_whitespace_only_pieces=true --hard_vocab_limit=false"
                             " --minloglevel=2";
    auto status = sentencepiece::SentencePieceTrainer::Train(args);
    OMNIRT_CHECK(status.ok(), "training the test tokenizer failed: ", status.ToString());
    return prefix + ".model";
  }();
  return path;
}

inline const llm::Tokenizer& llm_test_tokenizer() {
  static const llm::Tokenizer tok = llm::Tokenizer::load(llm_test_tokenizer_path());
  return tok;
}

}  // namespace omnirt::testing
