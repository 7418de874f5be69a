"""The training loop, built on accelerate (`speechllm train CONFIG.json`).

Each manifest item brings its instructions in a `tasks` field, a list of
`{"instruction": ..., "answer": ...}` (or, without one, "Transcribe the audio exactly." ->
`text`). A token model also takes `{"speak": true}`: say the item's `text` as the clip's units
(the generation direction). Batches draw (item, task) pairs at random, so tasks mix in a batch.
`data.manifest` may be a list of manifests, trained on together.

What trains: the model's adapter; LoRA on the LLM when `model.lora_rank` > 0 (peft); the
encoder too with `train.unfreeze_encoder` when the model has a trainable one (at
`train.encoder_lr`). A frozen encoder's states are computed once, before the first step.

Scale-out: the trainable parts, the optimiser and the batches go through
`Accelerator.prepare`, so whatever `accelerate config` / `accelerate launch` (or torchrun) sets
up applies: one process, DDP on CPUs (gloo) or GPUs (NCCL), FSDP (on CPUs too: see
`sharding`). Each process takes its share of every global batch (a seeded draw of
`batch_size` x processes pairs, sharded by accelerate). Checkpoints hold the
trainable weights, the optimiser and the step (gathered whole under FSDP); a rerun with the
same output folder resumes from the latest one.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from speechllm._optional import require
from speechllm.audio import Audio
from speechllm.data import Item, read_manifest
from speechllm.errors import AudioError
from speechllm.lm import precision
from speechllm.lm.lora import add_lora
from speechllm.train import checkpoint, sharding
from speechllm.train.base import ConfigError, Trainable, TrainResult
from speechllm.train.config import TrainConfig, examples

if TYPE_CHECKING:
    from accelerate import Accelerator
    from torch import Tensor, nn


def _step_module(model: Trainable, encoder: nn.Module | None) -> nn.Module:
    """The trainable parts as one torch module whose forward is the model's loss: what
    accelerate wraps (DDP arms its gradient averaging in the wrapper's forward; FSDP gathers
    the sharded weights in it, so a trainable encoder runs inside it too)."""
    torch = require("torch", "latent")

    class Step(torch.nn.Module):  # type: ignore[name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.lm, self.adapter = model.lm, model.adapter
            if encoder is not None:
                self.encoder = encoder

        def forward(self, states: Tensor | None, lengths: Tensor | None,
                    instructions: list[str], answers: list[Any],
                    audios: list[Audio] | None = None) -> Tensor:
            if audios is not None:
                states, lengths = model.encode_audio(audios)
            assert states is not None and lengths is not None
            return model.loss(states, lengths, instructions, answers)

    return Step()


def train(config: TrainConfig, progress: Callable[[int, int, float], None] | None = None
          ) -> TrainResult:
    """Train (or resume) and save the model to `<output>/final`."""
    torch = require("torch", "latent")
    from speechllm.audio import load

    acc = sharding.accelerator()
    shard = sharding.sharded(acc)
    s = config.train
    out = Path(s.output)
    torch.manual_seed(s.seed)
    items: list[Item] = []
    groups_of_pairs = []  # the examples of each manifest, drawn from by its weight
    for path in config.manifests:
        part = read_manifest(path)
        groups_of_pairs.append([(n + len(items), q, a) for n, q, a in examples(
            part, config.approach, config.model)])
        items += part
    pairs = [p for g in groups_of_pairs for p in g]
    weights = list(config.weights) or [len(g) for g in groups_of_pairs]
    model = config.build()
    try:
        add_lora(model, config.model)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    # The LM and adapter train on the accelerator when there is one; each model's loss moves
    # its batch there. TF32 matrix products (tensor cores): ample precision for LoRA.
    device = acc.device
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    model.lm.to(device)
    model.adapter.to(device)
    model.adapter.train()
    mixed = precision.resolve(s.autocast, device.type)
    # every step runs under autocast; the LLM's body is frozen. Not under FSDP: one sharded
    # group holds one dtype, and the frozen body is sharded anyway.
    if mixed == "bf16" and not shard:
        precision.store_frozen_bf16(model.lm)
    groups: list[dict[str, Any]] = [{"params": list(model.adapter.parameters()), "lr": s.lr}]
    lora_params = [p for p in model.lm.parameters() if p.requires_grad]
    if lora_params:
        groups.append({"params": lora_params, "lr": s.lora_lr})
    encoder = model.trainable_encoder() if s.unfreeze_encoder else None
    if encoder is not None:
        for name, param in encoder.named_parameters():
            # Whisper's positional table is fixed sinusoids, frozen as in its own training
            param.requires_grad = not name.startswith("embed_positions")
        encoder.to(device)
        encoder.train()
        model.tuned_encoder = True
        groups.append({"params": [p for p in encoder.parameters() if p.requires_grad],
                       "lr": s.encoder_lr})

    step, losses = 0, []
    resumed: dict[str, Any] = {}
    found = checkpoint.latest(out)
    if found is not None:  # weights before prepare, so every process starts from them
        resumed = checkpoint.restore(found, model, encoder, lora_params)
        step, losses = resumed["step"], resumed["losses"]
    optim = torch.optim.AdamW(groups, weight_decay=s.weight_decay)
    # The schedule stays ours: accelerate's would step once per process each step.
    schedule = torch.optim.lr_scheduler.LambdaLR(optim, lambda k: min(1.0, (k + 1) / max(
        1, s.warmup)) * 0.5 * (1 + math.cos(math.pi * min(1.0, k / s.steps))))
    wrapped, optim = acc.prepare(_step_module(model, encoder), optim)
    # FSDP puts new (sharded) parameters in the modules: look the LoRA ones up again
    lora_params = [p for p in model.lm.parameters() if p.requires_grad]
    if resumed:
        sharding.load_optimizer_state(acc, wrapped, optim, resumed)
        schedule.load_state_dict(resumed["schedule"])

    audios: list[Audio] = []
    cache: list[Tensor] = []
    if encoder is None:  # a frozen encoder's states are computed once for the whole set
        cache = _encode_all(model, items, out)
    else:
        audios = [load(it.audio) for it in items]

    # resumed runs draw fresh, reproducible batches
    batches = _batches(acc, pairs, groups_of_pairs, weights, s.seed * 1000 + step, s.batch_size)
    world = acc.num_processes
    began = time.perf_counter()
    first_step = step
    while step < s.steps:
        mine = next(batches)
        states = lengths = clips = None
        if encoder is not None:
            clips = [audios[i] for i, _, _ in mine]
        else:
            # (B, T, D) states for an encoder, (B, T) unit ids for a token model
            states = torch.nn.utils.rnn.pad_sequence([cache[i] for i, _, _ in mine],
                                                     batch_first=True)
            lengths = torch.tensor([cache[i].shape[0] for i, _, _ in mine])
        with precision.autocast(mixed, device.type):
            loss = wrapped(states, lengths, [q for _, q, _ in mine], [a for _, _, a in mine],
                           clips)
        optim.zero_grad()
        acc.backward(loss)
        acc.clip_grad_norm_(wrapped.parameters(), 1.0)
        optim.step()
        schedule.step()
        step += 1
        value = float(acc.reduce(loss.detach(), reduction="mean"))
        losses.append(value)
        if progress and acc.is_main_process:
            progress(step, s.steps, value)
        if step % s.checkpoint_every == 0 or step == s.steps:
            # every process: gathering a sharded state takes them all
            trained = sharding.trained_weights(model, encoder, lora_params)
            optimizer = sharding.optimizer_state(acc, wrapped, optim)
            if acc.is_main_process:
                checkpoint.save(out, step, trained, optimizer, schedule, losses,
                                config.to_dict())
        acc.wait_for_everyone()
    elapsed = time.perf_counter() - began
    curve = out / "loss.png"
    if shard:
        # the modules hold shards: gather the trained weights into a fresh copy and save that
        trained = sharding.trained_weights(model, encoder, lora_params)
        if acc.is_main_process:
            model = _unsharded(config, trained, encoder is not None)
            encoder = model.trainable_encoder() if encoder is not None else None
    if acc.is_main_process:
        model.adapter.eval()
        if encoder is not None:
            encoder.eval()
        # saved from the CPU, so the folder loads the same on any machine
        model.lm.to("cpu")
        model.adapter.to("cpu")
        if encoder is not None:
            encoder.to("cpu")
        final = model.save_pretrained(out / "final")
        checkpoint.plot(losses, curve)
        # the curve as numbers too: to compare runs (one process against several, say)
        (out / "losses.json").write_text(json.dumps({"losses": losses, "processes": world}))
        # not config.json: a user's own config kept in the output folder would be overwritten
        (out / "train-config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    else:
        final = out / "final"
    acc.wait_for_everyone()
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    per_step = elapsed / max(1, step - first_step)
    return TrainResult(final, step, losses[-1] if losses else float("nan"), per_step, peak,
                       curve, world, tuple(losses), mixed, sharding.label(acc))


def _batches(acc: Accelerator, pairs: list[Any], groups: list[list[Any]], weights: list[float],
             seed: int, batch_size: int) -> Iterator[list[Any]]:
    """This process's (item, instruction, answer) rows of each step: one seeded stream of
    draws (with replacement; across manifests by their weights) through a DataLoader that
    accelerate's `prepare` shards, so the processes of a step share one global batch of
    `batch_size` x processes rows and any number of processes trains on the same rows."""
    torch = require("torch", "latent")

    class Draws(torch.utils.data.IterableDataset):  # type: ignore[name-defined]
        def __iter__(self) -> Iterator[Any]:
            rng = random.Random(seed)
            while True:
                yield (rng.choice(pairs) if len(groups) == 1 else
                       rng.choice(rng.choices(groups, weights)[0]))

    loader = torch.utils.data.DataLoader(Draws(), batch_size=batch_size, collate_fn=list)
    return iter(acc.prepare(loader))


def _unsharded(config: TrainConfig, weights: dict[str, Any], tuned_encoder: bool) -> Trainable:
    """A plain (CPU) copy of the model holding the gathered trained weights."""
    model = config.build()
    add_lora(model, config.model)
    encoder = model.trainable_encoder() if tuned_encoder else None
    sharding.load_weights(weights, model, encoder,
                          [p for p in model.lm.parameters() if p.requires_grad])
    model.tuned_encoder = tuned_encoder
    return model


def _encode_all(model: Trainable, items: list[Item], out: Path) -> list[Tensor]:
    """Every clip's frozen encoding. Where the model gives a cache key (a token model's unit
    ids are small), they are also kept in `<output>/encoded.pt` per clip path, size and mtime,
    so a rerun or a continued run skips the encoder and reads no audio; latent states are too
    big to keep and are recomputed."""
    torch = require("torch", "latent")
    key = model.cache_key()
    path = out / "encoded.pt"
    kept: dict[str, Any] = {}
    if key is not None and path.is_file():
        try:
            saved = torch.load(path, weights_only=True)
            kept = saved["clips"] if saved.get("key") == key else {}
        except Exception:  # a damaged cache is only a cache: encode again
            kept = {}

    def stamp(item: Item) -> str:
        if not Path(item.audio).is_file():
            raise AudioError(f"{item.audio}: no such file")
        st = Path(item.audio).stat()
        return f"{Path(item.audio).resolve()}|{st.st_size}|{st.st_mtime_ns}"

    names = [stamp(it) for it in items] if key is not None else []
    todo = [n for n in range(len(items)) if key is None or names[n] not in kept]
    fresh: dict[int, Tensor] = {}
    with torch.no_grad():
        for start in range(0, len(todo), 16):
            chunk = todo[start:start + 16]
            states, lengths = model.encode_clips([items[n].audio for n in chunk])
            for b, n in enumerate(chunk):
                fresh[n] = states[b, : int(lengths[b])].clone()
    if key is None:
        return [fresh[n] for n in range(len(items))]
    if fresh:
        kept.update({names[n]: t for n, t in fresh.items()})
        out.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".encoded-{os.getpid()}.partial")  # one per process
        torch.save({"key": key, "clips": kept}, partial)
        partial.replace(path)
    return [kept[name] for name in names]
