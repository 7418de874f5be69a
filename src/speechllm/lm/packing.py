"""Training batches packed end to end instead of padded.

A token model's batch mixes short understanding rows (about 40 tokens) with longer speaking
rows (about 55, up to 90), so a batch padded to its longest row is about 30% padding (the
token recipe's batches, docs/token_digits/results.md#recipe_speed). Packed, the rows sit one after
another in a few long rows; each one's positions restart at 0, which is how transformers
recognises packed sequences (with no attention mask given) and keeps every sequence
attending to itself alone, sliding windows included. Rows are spread over as few packed rows
as `capacity` allows (longest first into the shortest), so attention, which grows with the
square of a packed row's length, stays small.

`pack` packs token ids (the token model); `pack_embeddings` packs rows of input embeddings
(the latent model, whose rows splice adapted audio frames between text embeddings).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from speechllm.errors import MissingDependency

try:
    import torch
    from torch import Tensor
except ImportError as exc:  # imported only by torch-based models
    raise MissingDependency(f"torch is not installed ({exc}); install it with: "
                            "pip install 'speechllm[latent]'") from exc

IGNORE = -100  # the label of a position that is not a target

PACK_TOKENS = 256  # a packed row's length when rows are spread over several


@dataclass(frozen=True)
class Packed:
    ids: Tensor  # (P, W); filler positions hold `fill`
    labels: Tensor  # (P, W); IGNORE where no target
    positions: Tensor  # (P, W): each row's positions from 0, the filler a run of its own


def pack(rows: Sequence[Sequence[int]], labels: Sequence[Sequence[int]],
         capacity: int = PACK_TOKENS, fill: int = 0) -> Packed:
    """Pack token rows and their labels (same lengths) into as few rows as `capacity` allows
    (a row longer than `capacity` is kept whole). A row's first label is never a target:
    in a padded batch nothing precedes it, packed it would be predicted from the row before."""
    if not rows or len(rows) != len(labels):
        raise ValueError(f"{len(rows)} rows for {len(labels)} label rows")
    for r, lab in zip(rows, labels, strict=True):
        if not r or len(r) != len(lab):
            raise ValueError(f"a row of {len(r)} tokens has {len(lab)} labels")
    total = sum(len(r) for r in rows)
    bins: list[list[int]] = [[] for _ in range(max(1, math.ceil(total / capacity)))]
    sizes = [0] * len(bins)
    for n in sorted(range(len(rows)), key=lambda n: -len(rows[n])):
        b = min(range(len(bins)), key=sizes.__getitem__)
        bins[b].append(n)
        sizes[b] += len(rows[n])
    width = max(sizes)
    ids = torch.full((len(bins), width), fill, dtype=torch.long)
    marks = torch.full((len(bins), width), IGNORE, dtype=torch.long)
    positions = torch.zeros((len(bins), width), dtype=torch.long)
    for b, members in enumerate(bins):
        at = 0
        for n in members:
            size = len(rows[n])
            ids[b, at:at + size] = torch.tensor(rows[n])
            marks[b, at + 1:at + size] = torch.tensor(labels[n][1:])
            positions[b, at:at + size] = torch.arange(size)
            at += size
        positions[b, at:] = torch.arange(width - at)  # filler: a sequence of its own
    return Packed(ids, marks, positions)


def pack_embeddings(rows: Sequence[Tensor], labels: Sequence[Sequence[int]],
                    capacity: int = PACK_TOKENS) -> tuple[Tensor, Packed]:
    """`pack` for rows of input embeddings, each (length, dim): the packed embeddings
    (P, W, dim), zero at the filler, and the packing (its `ids` index the rows' frames laid
    end to end). Gradients flow back to every row."""
    if not rows:
        raise ValueError("no rows to pack")
    flat = torch.cat([*rows, rows[0].new_zeros(1, rows[0].shape[1])])
    starts = [0]
    for r in rows:
        starts.append(starts[-1] + r.shape[0])
    index = [list(range(a, b)) for a, b in itertools.pairwise(starts)]
    packed = pack(index, labels, capacity, fill=starts[-1])
    return flat[packed.ids.to(flat.device)], packed


def packed_hidden(causal_lm: Any, embeds: Tensor, positions: Tensor) -> Tensor:
    """The LLM body's last hidden states over packed rows: positions restarting at 0, no
    mask and no cache, so transformers keeps each sequence apart (with a cache it reads a
    packed row as one long sequence)."""
    out = causal_lm.model(inputs_embeds=embeds, position_ids=positions.to(embeds.device),
                          use_cache=False)
    hidden: Tensor = out.last_hidden_state
    return hidden
