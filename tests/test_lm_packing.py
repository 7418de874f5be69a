"""Packing training rows end to end (token ids, or embeddings): every token kept once,
positions restarting per row, no row's first token made a target, and packed rows kept near
the capacity asked for."""

from __future__ import annotations

import random

import pytest

from speechllm.lm.packing import IGNORE, pack


def rows_of(lengths: list[int]) -> tuple[list[list[int]], list[list[int]]]:
    rows, labels, next_id = [], [], 1
    for size in lengths:
        rows.append(list(range(next_id, next_id + size)))
        labels.append([t + 1000 for t in rows[-1]])  # every position a target
        next_id += size
    return rows, labels


def segments(ids: list[int], positions: list[int]) -> list[list[int]]:
    out: list[list[int]] = []
    for token, pos in zip(ids, positions, strict=True):
        if pos == 0:
            out.append([])
        out[-1].append(token)
    return out


def test_rows_come_back_whole_with_their_own_positions():
    rng = random.Random(3)
    lengths = [rng.randint(20, 90) for _ in range(8)]
    rows, labels = rows_of(lengths)
    packed = pack(rows, labels, capacity=128, fill=0)
    found = []
    for ids, pos, marks in zip(packed.ids.tolist(), packed.positions.tolist(),
                               packed.labels.tolist(), strict=True):
        for seg in segments(ids, pos):
            if seg[0] != 0:  # filler is a run of its own
                found.append(seg)
        for n, (token, mark) in enumerate(zip(ids, marks, strict=True)):
            if token == 0 or pos[n] == 0:
                assert mark == IGNORE  # filler and each row's first token: no target
            else:
                assert mark == token + 1000
    assert sorted(found) == sorted(rows)
    # spread over ceil(total / capacity) rows, each close to the capacity
    assert packed.ids.shape[0] == -(-sum(lengths) // 128)
    assert packed.ids.shape[1] <= 128 + max(lengths)  # longest first into the shortest


def test_a_row_longer_than_the_capacity_is_kept_whole():
    rows, labels = rows_of([300, 10, 10])
    packed = pack(rows, labels, capacity=64)
    assert packed.ids.shape[1] >= 300
    assert any(seg == rows[0] for r in range(packed.ids.shape[0])
               for seg in segments(packed.ids[r].tolist(), packed.positions[r].tolist()))


@pytest.mark.parametrize("rows, labels", [([], []), ([[1, 2]], [[1]]), ([[]], [[]])])
def test_mismatched_rows_are_refused(rows, labels):
    with pytest.raises(ValueError):
        pack(rows, labels)


def test_packed_embeddings_hold_each_rows_frames_and_pass_gradients_back():
    import torch

    from speechllm.lm.packing import pack_embeddings

    torch.manual_seed(0)
    rows = [torch.randn(size, 4, requires_grad=True) for size in (7, 3, 5, 6)]
    labels = [[1] * len(r) for r in rows]
    embeds, packed = pack_embeddings(rows, labels, capacity=12)
    assert embeds.shape[:2] == packed.positions.shape and embeds.shape[2] == 4
    found = []
    for b in range(embeds.shape[0]):
        for seg in segments(list(range(embeds.shape[1])), packed.positions[b].tolist()):
            found.append(embeds[b, seg])
    for r in rows:  # every row appears whole, in order, as one sequence of its own
        assert sum(bool(torch.equal(r, f)) for f in found) == 1
    filler = [f for f in found if not any(f.shape == r.shape and torch.equal(f, r) for r in rows)]
    assert all(float(f.detach().abs().sum()) == 0 for f in filler)
    embeds.sum().backward()
    assert all(torch.equal(r.grad, torch.ones_like(r)) for r in rows)
