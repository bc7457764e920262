#!/usr/bin/env python3
"""Train the small deterministic SentencePiece model used by tests in place of LLaMA's.

LLaMA-2's tokenizer.model cannot be downloaded here, so tests use a BPE model trained with the
same normaliser/encoder options as LLaMA's (BPE, identity normalisation, dummy prefix, no
whitespace collapsing, digits split, byte fallback, unk=0 <unk>, bos=1 <s>, eos=2 </s>, no pad)
on a corpus we ship (python/data/tokenizer_corpus.txt: the planning prompt, driving phrases and
many formatted trajectories).

    python/make_test_tokenizer.py                 # (re)train -> tests/data/tokenizer/test_tokenizer.model
    python/make_test_tokenizer.py --write-corpus  # also regenerate the corpus file first
    python/make_test_tokenizer.py --check         # train twice in memory, verify identical bytes
                                                  # and identical to the committed model

Training reads the corpus through a sentence iterator and writes through a BytesIO, so no file
path ends up inside the model and the output bytes depend only on the corpus and the options.
"""
from __future__ import annotations

import argparse
import io
import math
import os
import random
import sys

import sentencepiece as spm

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from omnidrive_ref.prompt import LOCATIONS, PLANNING_QUESTION, SYSTEM_MESSAGE  # noqa: E402
from omnidrive_ref.tokenizer import TEST_TOKENIZER_PATH, Tokenizer  # noqa: E402
from omnidrive_ref.trajectory import format_answer  # noqa: E402

CORPUS_PATH = os.path.join(HERE, "data", "tokenizer_corpus.txt")
VOCAB_SIZE = 512

TRAINER_OPTIONS = dict(
    model_type="bpe",
    vocab_size=VOCAB_SIZE,
    character_coverage=1.0,
    normalization_rule_name="identity",
    add_dummy_prefix=True,
    remove_extra_whitespaces=False,
    allow_whitespace_only_pieces=True,
    split_digits=True,
    split_by_unicode_script=True,
    split_by_number=True,
    byte_fallback=True,
    max_sentencepiece_length=16,
    unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
    unk_piece="<unk>", bos_piece="<s>", eos_piece="</s>",
    num_threads=1,
    shuffle_input_sentence=False,
    input_sentence_size=0,
    minloglevel=2,
)

DRIVING_PHRASES = [
    "The ego car is driving straight on a two-lane road.",
    "A pedestrian is crossing the street in front of you.",
    "There is a parked truck on the right side of the road.",
    "The traffic light ahead is red, so the ego car should stop.",
    "The traffic light turns green and the car moves forward.",
    "Keep a safe distance from the bus in front.",
    "A cyclist is riding in the bike lane on the left.",
    "Turn left at the next intersection.",
    "Turn right at the next intersection.",
    "Change to the left lane to overtake the slow vehicle.",
    "Slow down, there are traffic cones and a barrier ahead.",
    "A construction vehicle is blocking part of the lane.",
    "The motorcycle behind you is approaching quickly.",
    "Yield to the oncoming car before making the turn.",
    "The road curves gently to the right.",
    "Follow the centerline of the current lane.",
    "The ego vehicle accelerates after the crosswalk.",
    "Maintain the current speed and heading.",
    "There is a trailer waiting at the stop sign.",
    "The car ahead is braking; decelerate smoothly.",
    "What objects are in front of the ego car?",
    "What should the ego car do next and why?",
    "Is it safe to change lanes to the right?",
    "Describe the current driving scene in detail.",
    "The weather is rainy and the road is wet at night.",
    "The ego car is waiting at a red light in a parking lot.",
    "Pedestrians are walking on the sidewalk near the bus stop.",
    "Drive carefully through the roundabout.",
    "The vehicle is moving forward at about 5 meters per second.",
    "The planned path goes around the stopped car.",
    "Front camera, front right camera, front left camera, back camera, back left camera, "
    "back right camera.",
    "car, truck, construction_vehicle, bus, trailer, barrier, motorcycle, bicycle, pedestrian, "
    "traffic_cone",
    "The quick brown fox jumps over the lazy dog 0123456789 times.",
]


def build_corpus() -> str:
    """The corpus text, one sentence per line, fully determined by this function."""
    rng = random.Random(20241129)
    lines = []
    for loc in LOCATIONS:
        lines.append(f"{SYSTEM_MESSAGE} USER: ")
        lines.append(f"You are driving in {loc}. {PLANNING_QUESTION} ASSISTANT:")
        lines.append(f"{SYSTEM_MESSAGE} USER: You are driving in {loc}. {PLANNING_QUESTION} "
                     f"ASSISTANT:")
    lines += DRIVING_PHRASES
    # Trajectories like the planner's answers: mostly forward motion with a small lateral drift,
    # some stopped, some turning; cumulative over 6 steps of 0.5 s.
    for _ in range(400):
        kind = rng.random()
        speed = 0.0 if kind < 0.1 else rng.uniform(0.5, 15.0)
        yaw_rate = rng.gauss(0.0, 0.15 if kind < 0.8 else 0.5)
        x = y = yaw = 0.0
        pts = []
        for _step in range(6):
            yaw += yaw_rate * 0.5
            x += speed * 0.5 * math.cos(yaw) + rng.gauss(0, 0.02)
            y += speed * 0.5 * math.sin(yaw) + rng.gauss(0, 0.02)
            pts.append((x, y))
        lines.append(format_answer(pts))
    for _ in range(100):
        a, b = rng.uniform(-60, 60), rng.uniform(-60, 60)
        lines.append(f"The object is at ({a:+.2f}, {b:+.2f}) with speed {abs(a) / 7:.1f} m/s.")
    return "\n".join(lines) + "\n"


def train(corpus_text: str) -> bytes:
    sentences = [s for s in corpus_text.split("\n") if s]
    out = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(sentences), model_writer=out,
                                   **TRAINER_OPTIONS)
    return out.getvalue()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write-corpus", action="store_true", help="regenerate the corpus file")
    ap.add_argument("--check", action="store_true",
                    help="train twice and compare with each other and the committed model")
    ap.add_argument("--out", default=TEST_TOKENIZER_PATH)
    args = ap.parse_args()

    if args.write_corpus:
        os.makedirs(os.path.dirname(CORPUS_PATH), exist_ok=True)
        with open(CORPUS_PATH, "w", encoding="utf-8") as f:
            f.write(build_corpus())
    with open(CORPUS_PATH, encoding="utf-8") as f:
        corpus = f.read()

    model = train(corpus)
    if args.check:
        again = train(corpus)
        if model != again:
            print("FAIL: two trainings gave different bytes", file=sys.stderr)
            return 1
        with open(args.out, "rb") as f:
            committed = f.read()
        if committed != model:
            print(f"FAIL: {args.out} differs from a fresh training", file=sys.stderr)
            return 1
        print(f"ok: deterministic, {len(model)} bytes, matches {args.out}")
        return 0
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "wb") as f:
        f.write(model)
    tok = Tokenizer(args.out)
    print(f"wrote {args.out}: {len(model)} bytes, vocab {tok.vocab_size}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
