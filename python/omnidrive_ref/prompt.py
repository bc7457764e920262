"""The planning prompt (spec omnidrive_model.md §4.1) and LLaVA's tokenizer_image_token."""
from __future__ import annotations

from typing import List

from .tokenizer import BOS_ID, Tokenizer

IMAGE_TOKEN = "<image>"
IMAGE_TOKEN_INDEX = -200
LOCATIONS = ("boston", "singapore")

# conv_vicuna_v1: system message, separator style TWO (sep " ", sep2 "</s>"), roles USER /
# ASSISTANT; a single user turn followed by the empty assistant turn "ASSISTANT:".
SYSTEM_MESSAGE = ("A chat between a curious user and an artificial intelligence assistant. "
                  "The assistant gives helpful, detailed, and polite answers to the user's "
                  "questions.")
PLANNING_QUESTION = "Please provide the planning trajectory for the ego car without reasons."


def location_from_log(location: str) -> str:
    """nuScenes log location ("boston-seaport", "singapore-onenorth", ...) -> prompt word."""
    loc = location.split("-")[0]
    if loc not in LOCATIONS:
        raise ValueError(f"location {location!r}: expected one of {LOCATIONS} (optionally "
                         f"followed by '-<area>')")
    return loc


def planning_prompt(location: str) -> str:
    loc = location_from_log(location)
    user = f"{IMAGE_TOKEN}\nYou are driving in {loc}. {PLANNING_QUESTION}"
    return f"{SYSTEM_MESSAGE} USER: {user} ASSISTANT:"


def tokenizer_image_token(prompt: str, tokenizer: Tokenizer,
                          image_token_index: int = IMAGE_TOKEN_INDEX) -> List[int]:
    """LLaVA's tokenizer_image_token: split on <image>, tokenize every chunk on its own (each with
    a BOS, as the slow LLaMA tokenizer does), keep the first chunk's BOS only, and put one
    `image_token_index` between consecutive chunks."""
    chunks = [tokenizer.encode(c, add_bos=True) for c in prompt.split(IMAGE_TOKEN)]
    ids: List[int] = []
    offset = 0
    if chunks and chunks[0] and chunks[0][0] == BOS_ID:
        offset = 1
        ids.append(BOS_ID)
    for k, chunk in enumerate(chunks):
        if k > 0:
            ids.append(image_token_index)
        ids.extend(chunk[offset:])
    return ids


def planning_prompt_ids(tokenizer: Tokenizer, location: str) -> List[int]:
    return tokenizer_image_token(planning_prompt(location), tokenizer)
