import io
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pytest  # noqa: E402
import sentencepiece as spm  # noqa: E402

import make_test_tokenizer as mtt  # noqa: E402
from omnidrive_ref.tokenizer import TEST_TOKENIZER_PATH, Tokenizer, load_test_tokenizer  # noqa: E402


def test_special_ids_match_llama_layout():
    tok = load_test_tokenizer()
    assert tok.vocab_size == 512
    assert [tok.id_to_piece(i) for i in range(3)] == ["<unk>", "<s>", "</s>"]
    # Byte fallback pieces right after the specials, as in LLaMA (<0x0A> is id 13 there too).
    assert tok.id_to_piece(3) == "<0x00>"
    assert tok.id_to_piece(13) == "<0x0A>"
    assert tok.id_to_piece(258) == "<0xFF>"


def test_training_is_deterministic_and_matches_committed_model():
    with open(mtt.CORPUS_PATH, encoding="utf-8") as f:
        corpus = f.read()
    a = mtt.train(corpus)
    b = mtt.train(corpus)
    assert a == b
    with open(TEST_TOKENIZER_PATH, "rb") as f:
        assert f.read() == a


def test_corpus_file_is_what_the_generator_writes():
    with open(mtt.CORPUS_PATH, encoding="utf-8") as f:
        assert f.read() == mtt.build_corpus()


def test_llama_like_encoding_rules():
    tok = load_test_tokenizer()
    sp = tok.sp
    # Dummy prefix: a leading "▁" on the first word; a newline is a byte-fallback piece.
    assert tok.encode("\n") == [sp.PieceToId("▁"), sp.PieceToId("<0x0A>")]
    assert tok.id_to_piece(tok.encode("Here")[0]).startswith("▁")
    # Digits are split into single-digit pieces.
    pieces = [tok.id_to_piece(i) for i in tok.encode("(+13.10, -0.12)")]
    assert all(len(p.strip("▁")) <= 1 for p in pieces if any(c.isdigit() for c in p)), pieces
    assert tok.encode("x", add_bos=True)[0] == 1


@pytest.mark.parametrize("text", [
    "Here is the planning trajectory [PT, (+4.35, 0.0), (+8.72, -0.05)].",
    "héllo wörld €, 東京 ✓",
    "two  spaces and trailing space ",
    "line\nbreak\ttab",
])
def test_round_trip(text):
    tok = load_test_tokenizer()
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    # Specials are skipped on decode (HF skip_special_tokens=True), ids >= vocab are dropped.
    assert tok.decode([1] + ids + [2, 0, 600]) == text


def test_rejects_model_with_other_special_ids(tmp_path):
    out = io.BytesIO()
    opts = dict(mtt.TRAINER_OPTIONS, unk_id=0, bos_id=2, eos_id=1, vocab_size=400)
    spm.SentencePieceTrainer.train(sentence_iterator=iter(mtt.build_corpus().split("\n")[:60]),
                                   model_writer=out, **opts)
    p = tmp_path / "bad.model"
    p.write_bytes(out.getvalue())
    with pytest.raises(ValueError, match="bos_id is 2, expected 1"):
        Tokenizer(str(p))
    with pytest.raises(FileNotFoundError):
        Tokenizer(str(tmp_path / "missing.model"))
