"""Comparison helpers shared by the fixture and ONNX tests.

Outputs of the vision reference are compared with a tolerance relative to each tensor's largest
magnitude: 1e-4 on a first frame; looser (3e-3) once the temporal memory is used, because memory
points are stored in the global frame (~1.6 km from the origin here, as on nuScenes) where one
float32 ulp moved through the NeRF position encodings already changes class scores by ~1e-2
(spec Appendix C). Rows chosen by top-k may swap between near-ties, so memory rows written this
frame are matched by content (their embedding) before comparing, as Appendix C advises.
"""
from __future__ import annotations

from typing import Dict, List

import torch

MEMORY_GROUPS = {
    "bbox": ["memory_embedding_bbox", "memory_reference_point_bbox", "memory_timestamp_bbox",
             "memory_egopose_bbox"],
    "map": ["memory_embedding_map", "memory_reference_point_map", "memory_timestamp_map",
            "memory_egopose_map"],
}


def rel_tol(frame: int) -> float:
    return 1e-4 if frame == 0 else 3e-3


def assert_close_rel(name: str, ref: torch.Tensor, got: torch.Tensor, rel: float) -> None:
    assert tuple(ref.shape) == tuple(got.shape), f"{name}: shape {tuple(got.shape)} vs {tuple(ref.shape)}"
    ref64, got64 = ref.double(), got.double()
    scale = max(ref64.abs().max().item(), 1e-6)
    err = (ref64 - got64).abs().max().item()
    assert err <= rel * scale, f"{name}: max |diff| {err:.3g} > {rel:g} x max|ref| {scale:.3g}"


def new_row_perm(ref_emb: torch.Tensor, got_emb: torch.Tensor, k: int) -> List[int]:
    """Permutation of the first k memory rows (those recorded this frame) matching `got` rows to
    `ref` rows by embedding; rows >= k keep their place."""
    r, g = ref_emb.reshape(ref_emb.shape[-2], -1)[:k].double(), got_emb.reshape(got_emb.shape[-2], -1)[:k].double()
    d = torch.cdist(r, g)
    perm = d.argmin(dim=1).tolist()
    assert sorted(perm) == list(range(k)), f"memory rows do not match one to one: {perm}"
    return perm + list(range(k, ref_emb.shape[-2]))


def compare_memory(ref: Dict[str, torch.Tensor], got: Dict[str, torch.Tensor], topk: Dict[str, int],
                   rel: float, prefix_ref: str = "", prefix_got: str = "", suffix_got: str = "") -> None:
    for group, names in MEMORY_GROUPS.items():
        emb = names[0]
        perm = new_row_perm(ref[prefix_ref + emb][0], got[prefix_got + emb + suffix_got][0], topk[group])
        for n in names:
            r = ref[prefix_ref + n].double()
            g = got[prefix_got + n + suffix_got].double()[:, perm]
            assert_close_rel(n, r, g, rel)
