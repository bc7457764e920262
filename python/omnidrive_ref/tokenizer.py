"""SentencePiece tokenizer with the slow HF LlamaTokenizer semantics OmniDrive uses.

OmniDrive loads TinyLlama's tokenizer with `use_fast=False` under transformers 4.31 (legacy
mode), which for text without special-token strings is plain `SentencePieceProcessor.encode`
(the model's add_dummy_prefix applies) plus a BOS in front. Decoding with
`skip_special_tokens=True` drops unk/bos/eos (and pad = unk) and joins the pieces with
SentencePiece's decoder. The real LLaMA-2 `tokenizer.model` works unchanged; tests use the small
model trained by python/make_test_tokenizer.py.
"""
from __future__ import annotations

import os
from typing import Iterable, List

import sentencepiece as spm

UNK_ID, BOS_ID, EOS_ID = 0, 1, 2
PAD_ID = UNK_ID  # OmniDrive sets pad_token = unk_token

_HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.normpath(os.path.join(_HERE, "..", ".."))
TEST_TOKENIZER_PATH = os.path.join(REPO_ROOT, "tests", "data", "tokenizer", "test_tokenizer.model")


class Tokenizer:
    def __init__(self, model_path: str):
        if not os.path.isfile(model_path):
            raise FileNotFoundError(f"tokenizer model not found: {model_path}")
        self.path = model_path
        self.sp = spm.SentencePieceProcessor()
        if not self.sp.Load(model_path):
            raise ValueError(f"cannot load SentencePiece model {model_path}")
        # LLaMA's fixed special ids; refuse a model that disagrees instead of silently shifting.
        for name, want, got in (("unk", UNK_ID, self.sp.unk_id()), ("bos", BOS_ID, self.sp.bos_id()),
                                ("eos", EOS_ID, self.sp.eos_id())):
            if got != want:
                raise ValueError(f"{model_path}: {name}_id is {got}, expected {want} (LLaMA layout)")
        with open(model_path, "rb") as f:
            self.model_bytes = f.read()

    @property
    def vocab_size(self) -> int:
        return self.sp.GetPieceSize()

    bos_id = BOS_ID
    eos_id = EOS_ID
    unk_id = UNK_ID
    pad_id = PAD_ID

    def encode(self, text: str, add_bos: bool = False) -> List[int]:
        ids = list(self.sp.EncodeAsIds(text))
        return [BOS_ID] + ids if add_bos else ids

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        ids = [int(i) for i in ids]
        # Ids outside the vocabulary (TRT-LLM's virtual prompt-table ids >= vocab) are dropped.
        ids = [i for i in ids if 0 <= i < self.vocab_size]
        if skip_special_tokens:
            ids = [i for i in ids if i not in (UNK_ID, BOS_ID, EOS_ID)]
        return self.sp.DecodeIds(ids)

    def id_to_piece(self, i: int) -> str:
        return self.sp.IdToPiece(int(i))


def load_test_tokenizer() -> Tokenizer:
    return Tokenizer(TEST_TOKENIZER_PATH)
