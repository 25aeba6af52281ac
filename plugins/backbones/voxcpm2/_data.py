"""Training examples and batches in VoxCPM2's packed text/audio layout (as voxcpm's trainer packs).

Without a reference clip a sequence is ``[text, 101, audio × A, 102]``; with one it is
``[103, ref × R, 104, text, 101, audio × A, 102]``. The loss mask covers the target audio patches
only, and the stop label is 1 at the last target patch, exactly as upstream's packer builds them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

AUDIO_START, AUDIO_END, REF_START, REF_END = 101, 102, 103, 104


@dataclass
class VoxCPMExample:
    """One training clip: text token ids, target audio patches ``[A, P, D]``, optional reference."""

    id: str
    text_ids: torch.Tensor
    audio_feats: torch.Tensor
    ref_feats: torch.Tensor | None = None

    @property
    def length(self) -> int:
        ref = 0 if self.ref_feats is None else self.ref_feats.shape[0] + 2
        return ref + len(self.text_ids) + 1 + self.audio_feats.shape[0] + 1


def _ones(n: int) -> torch.Tensor:
    return torch.ones(n, dtype=torch.int32)


def _zeros(n: int) -> torch.Tensor:
    return torch.zeros(n, dtype=torch.int32)


def pack_example(ex: VoxCPMExample) -> dict[str, torch.Tensor]:
    """The five aligned tracks of one example (tokens, features, text/audio/loss masks, labels)."""
    text = ex.text_ids.to(torch.int32)
    feats = ex.audio_feats.float()
    a_len, t_len = feats.shape[0], len(text)
    zero_patch = torch.zeros((1, *feats.shape[1:]), dtype=torch.float32)
    tokens = [
        text,
        torch.tensor([AUDIO_START], dtype=torch.int32),
        _zeros(a_len),
        torch.tensor([AUDIO_END], dtype=torch.int32),
    ]
    audio = [torch.zeros((t_len + 1, *feats.shape[1:])), feats, zero_patch]
    text_mask = [_ones(t_len + 1), _zeros(a_len), _ones(1)]
    audio_mask = [_zeros(t_len + 1), _ones(a_len), _zeros(1)]
    loss_mask = [_zeros(t_len + 1), _ones(a_len), _zeros(1)]
    if ex.ref_feats is not None:
        ref = ex.ref_feats.float()
        r_len = ref.shape[0]
        tokens = [
            torch.tensor([REF_START], dtype=torch.int32),
            _zeros(r_len),
            torch.tensor([REF_END], dtype=torch.int32),
            *tokens,
        ]
        audio = [zero_patch, ref, zero_patch, *audio]
        text_mask = [_ones(1), _zeros(r_len), _ones(1), *text_mask]
        audio_mask = [_zeros(1), _ones(r_len), _zeros(1), *audio_mask]
        loss_mask = [_zeros(r_len + 2), *loss_mask]
    packed = {
        "text_tokens": torch.cat(tokens),
        "audio_feats": torch.cat(audio, dim=0),
        "text_mask": torch.cat(text_mask),
        "audio_mask": torch.cat(audio_mask),
        "loss_mask": torch.cat(loss_mask),
    }
    labels = _zeros(len(packed["text_tokens"]))
    labels[-2] = 1  # stop at the last target patch
    packed["labels"] = labels
    return packed


def collate_examples(examples: Sequence[VoxCPMExample]) -> dict[str, torch.Tensor]:
    """Pad packed examples to the longest (zeros; masks 0 on padding) and stack them."""
    if not examples:
        raise ValueError("collate: empty batch")
    packed = [pack_example(ex) for ex in examples]
    max_len = max(len(p["text_tokens"]) for p in packed)
    batch: dict[str, torch.Tensor] = {}
    for key in packed[0]:
        rows = []
        for p in packed:
            x = p[key]
            pad = max_len - x.shape[0]
            if pad:
                x = torch.cat([x, torch.zeros((pad, *x.shape[1:]), dtype=x.dtype)], dim=0)
            rows.append(x)
        batch[key] = torch.stack(rows)
    lengths = torch.tensor([len(p["text_tokens"]) for p in packed])
    positions = torch.arange(max_len).unsqueeze(0).expand(len(packed), -1)
    batch["position_ids"] = torch.where(positions < lengths[:, None], positions, 0)
    return batch
