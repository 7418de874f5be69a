"""Training a latent model (`speechllm train latent CONFIG.json`), built on accelerate.

    {"model": {"encoder": "whisper-tiny.en", "window_seconds": 4, "llm": "gemma-3-270m",
               "adapter": {"kind": "stack", "stack": 4}, "lora_rank": 0},
     "data": {"manifest": "data/digits/manifest.jsonl"},
     "train": {"output": "runs/digits", "steps": 400, "batch_size": 8, "lr": 0.001}}

Each manifest item brings its instructions in a `tasks` field, a list of
`{"instruction": ..., "answer": ...}` (or, without one, "Transcribe the audio exactly." ->
`text`). A token model also takes `{"speak": true}`: say the item's `text` as the clip's units
(the generation direction). Batches draw (item, task) pairs at random, so tasks mix in a batch.
`data.manifest` may be a list of manifests, trained on together.

What trains: the adapter; LoRA on the LLM when `model.lora_rank` > 0 (peft); the encoder too
with `train.unfreeze_encoder` when `model.encoder` is a Hugging Face Whisper folder (at
`train.encoder_lr`). A frozen encoder's states are computed once, before the first step.
Scale-out: run under `accelerate launch --num_processes N` (or torchrun); each process takes
its share of every global batch and gradients are averaged across processes (gloo on CPU,
NCCL on GPUs) before each optimiser step. Checkpoints hold the trainable weights, the
optimiser and the step; a rerun with the same output folder resumes from the latest one.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from speechllm._optional import require
from speechllm.errors import AudioError, SpeechLLMError
from speechllm.eval.manifest import Item, read_manifest
from speechllm.latent import precision
from speechllm.latent.encoders import is_hf_whisper
from speechllm.latent.model import LatentConfig

if TYPE_CHECKING:
    from speechllm.tokens.model import TokenLMConfig

DEFAULT_TASK = {"instruction": "Transcribe the audio exactly."}


class ConfigError(SpeechLLMError, ValueError):
    """A training config that cannot be used; the message names the field."""

    exit_code = 2


@dataclass(frozen=True)
class TrainSettings:
    output: str = "runs/latent"
    steps: int = 300
    batch_size: int = 8  # per process
    lr: float = 1e-3
    warmup: int = 20
    weight_decay: float = 0.0
    checkpoint_every: int = 100
    log_every: int = 10
    seed: int = 0
    lora_lr: float = 2e-4
    unfreeze_encoder: bool = False  # needs a Hugging Face Whisper folder as model.encoder
    encoder_lr: float = 1e-5
    # bfloat16 matrix products in each step: "auto" where the device has them in hardware
    # (a GPU with bf16, a CPU with AVX-512 BF16 or AMX), "bf16" always, "off" never
    autocast: str = "off"


@dataclass(frozen=True)
class TrainConfig:
    model: LatentConfig | TokenLMConfig
    manifest: Path | tuple[Path, ...]
    train: TrainSettings
    source: Path | None = None
    weights: tuple[float, ...] = ()  # per manifest: share of the examples drawn from it


    @property
    def manifests(self) -> tuple[Path, ...]:
        return self.manifest if isinstance(self.manifest, tuple) else (self.manifest,)

    def to_dict(self) -> dict[str, Any]:
        paths = [str(p) for p in self.manifests]
        data: dict[str, Any] = {"manifest": paths[0] if len(paths) == 1 else paths}
        if self.weights:
            data["weights"] = list(self.weights)
        return {"model": self.model.to_dict(), "data": data, "train": asdict(self.train)}


def _settings(data: Any) -> TrainSettings:
    if not isinstance(data, dict):
        raise ConfigError("train: expected an object")
    types = {f.name: f.type for f in fields(TrainSettings)}
    for key, value in data.items():
        if key not in types:
            raise ConfigError(f"train.{key}: unknown field; known: {', '.join(sorted(types))}")
        kinds: dict[str, type | tuple[type, ...]] = {"str": str, "int": int, "bool": bool,
                                                      "float": (int, float)}
        want = kinds[str(types[key])]
        if not isinstance(value, want) or (isinstance(value, bool) and want is not bool):
            raise ConfigError(f"train.{key}: expected {types[key]}, got {value!r}")
    s = TrainSettings(**data)
    for name in ("steps", "batch_size", "checkpoint_every", "log_every"):
        if getattr(s, name) < 1:
            raise ConfigError(f"train.{name}: must be >= 1, got {getattr(s, name)}")
    if not s.lr > 0:
        raise ConfigError(f"train.lr: must be > 0, got {s.lr}")
    if s.autocast not in precision.CHOICES:
        raise ConfigError(f"train.autocast: one of {', '.join(precision.CHOICES)}, "
                          f"got {s.autocast!r}")
    return s


def load_config(path: str | os.PathLike[str]) -> TrainConfig:
    """Read and check a training config without loading any model; ConfigError names the
    offending field."""
    source = Path(path)
    try:
        raw = json.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{source}: no such config file") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a JSON object with model, data and train")
    for key in raw:
        if key not in ("model", "data", "train"):
            raise ConfigError(f"{key}: unknown section; expected model, data, train")
    section = raw.get("model", {})
    model: LatentConfig | TokenLMConfig
    try:
        if isinstance(section, dict) and section.get("approach") == "tokens":
            # the audio-token model trains here too: new token rows + LoRA
            from speechllm.tokens.model import TokenLMConfig as Tokens

            units = section.get("units")
            if isinstance(units, str):  # relative to the config file, like every path here
                section = {**section, "units": str((source.parent / units).resolve())}
            model = Tokens.from_dict(section)
        else:
            model = LatentConfig.from_dict(section)
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from None
    if model.lora_rank < 0:
        raise ConfigError(f"model.lora_rank: must be >= 0, got {model.lora_rank}")
    data = raw.get("data")
    given = data.get("manifest") if isinstance(data, dict) else None
    if isinstance(given, str):
        given = [given]
    if not (isinstance(given, list) and given and all(isinstance(g, str) for g in given)):
        raise ConfigError("data.manifest: required, the training manifest's path (or a list "
                          "of them)")
    paths = tuple((source.parent / g).resolve() for g in given)
    for found in paths:
        if not found.is_file():
            raise ConfigError(f"data.manifest: {found} not found")
    manifest = paths[0] if len(paths) == 1 else paths
    weights = data.get("weights", []) if isinstance(data, dict) else []
    if weights and (not isinstance(weights, list) or len(weights) != len(paths) or not all(
            isinstance(w, (int, float)) and not isinstance(w, bool) and w > 0 for w in weights)):
        raise ConfigError(f"data.weights: expected {len(paths)} positive numbers, one per "
                          f"manifest, got {weights!r}")
    settings = _settings(raw.get("train", {}))
    if settings.unfreeze_encoder and not is_hf_whisper(getattr(model, "encoder", "")):
        raise ConfigError(f"train.unfreeze_encoder: model.encoder "
                          f"{getattr(model, 'encoder', None)!r} is not trainable (a frozen "
                          "CTranslate2 model, or none); give a Hugging Face Whisper folder "
                          "to fine-tune")
    # Paths in a config are relative to the config file, wherever it is run from.
    settings = replace(settings, output=str((source.parent / settings.output).resolve()))
    return TrainConfig(model, manifest, settings, source, tuple(float(w) for w in weights))


def examples(items: list[Item], speak: bool = False) -> list[tuple[int, str, Any]]:
    """(item index, instruction, answer) for every task of every item; a speak task is
    (index, SPEAK_TASK, SpeakTarget) and needs a token model (`speak`)."""
    out: list[tuple[int, str, Any]] = []
    for n, item in enumerate(items):
        tasks = item.fields.get("tasks") or [DEFAULT_TASK]
        for t in tasks:
            if t.get("speak"):
                if not speak:
                    raise ConfigError(f"{item.audio}: a speak task needs a token model "
                                      '("model": {"approach": "tokens", ...})')
                if not (item.text or "").strip():
                    raise ConfigError(f"{item.audio}: a speak task needs the item's text")
                from speechllm.tokens.model import SPEAK_TASK, SpeakTarget

                try:
                    out.append((n, SPEAK_TASK, SpeakTarget.from_item(item)))
                except ValueError as exc:  # malformed "words": a data error like the others
                    raise ConfigError(str(exc)) from None
                continue
            answer = t.get("answer", item.text)
            if not isinstance(t.get("instruction"), str) or answer is None:
                raise ConfigError(f"{item.audio}: each task needs an instruction and an "
                                  "answer (or the item's text)")
            out.append((n, t["instruction"], str(answer)))
    return out


@dataclass(frozen=True)
class TrainResult:
    output: Path
    steps: int
    final_loss: float
    seconds_per_step: float
    peak_rss_mb: float
    loss_curve: Path
    processes: int = 1
    losses: tuple[float, ...] = ()
    precision: str = "off"  # what train.autocast resolved to on this device: "bf16" or "off"


def add_lora(model: Any, settings: Any) -> None:
    """Wrap `model.lm` in LoRA as `settings` (a model config) asks; nothing at rank 0."""
    if not settings.lora_rank:
        return
    torch = require("torch", "latent")
    peft = require("peft", "latent")
    lora = peft.LoraConfig(r=settings.lora_rank, lora_alpha=2 * settings.lora_rank,
                           target_modules=list(settings.lora_modules), lora_dropout=0.0)
    # peft skips a named layer it cannot find as long as one other matches: check them all
    names = {n.rsplit(".", 1)[-1] for n, m in model.lm.named_modules()
             if isinstance(m, torch.nn.Linear)}
    missing = [m for m in settings.lora_modules if m not in names]
    if missing:
        raise ConfigError(f"model.lora_modules: {', '.join(missing)} not in this LLM; its "
                          f"linear layers: {', '.join(sorted(names))}")
    model.lm = peft.get_peft_model(model.lm, lora)


def train(config: TrainConfig, progress: Callable[[int, int, float], None] | None = None
          ) -> TrainResult:
    """Train (or resume) and save the model to `<output>/final`."""
    torch = require("torch", "latent")
    accelerate = require("accelerate", "latent")
    from speechllm.audio import load
    from speechllm.latent.model import LatentSpeechLM

    acc = accelerate.Accelerator(cpu=not torch.cuda.is_available())
    s = config.train
    out = Path(s.output)
    torch.manual_seed(s.seed)
    items: list[Item] = []
    groups_of_pairs = []  # the examples of each manifest, drawn from by its weight
    for path in config.manifests:
        part = read_manifest(path)
        groups_of_pairs.append([(n + len(items), q, a) for n, q, a in examples(
            part, speak=not isinstance(config.model, LatentConfig))])
        items += part
    pairs = [p for g in groups_of_pairs for p in g]
    if getattr(config.model, "interleave_words", False):
        unaligned = [items[n].audio for n, _, a in pairs if hasattr(a, "words") and not a.words]
        if unaligned:
            raise ConfigError(f"model.interleave_words: {len(unaligned)} speak clip(s) have no "
                              f"word timings (the first: {unaligned[0]}); add them with "
                              "`speechllm tokens align MANIFEST` and train on the manifest "
                              "it writes")
    weights = list(config.weights) or [len(g) for g in groups_of_pairs]
    model: Any
    if isinstance(config.model, LatentConfig):
        model = LatentSpeechLM(config.model)
    else:
        from speechllm.tokens.model import TokenSpeechLM

        model = TokenSpeechLM(config.model)
    add_lora(model, config.model)
    # The LM and adapter train on the accelerator when there is one; each model's loss moves
    # its batch there. TF32 matrix products (tensor cores): ample precision for LoRA.
    device = acc.device
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    model.lm.to(device)
    model.adapter.to(device)
    model.adapter.train()
    mixed = precision.resolve(s.autocast, device.type)
    if mixed == "bf16":  # every step runs under autocast; the LLM's body is frozen
        precision.store_frozen_bf16(model.lm)
    groups: list[dict[str, Any]] = [{"params": list(model.adapter.parameters()), "lr": s.lr}]
    lora_params = [p for p in model.lm.parameters() if p.requires_grad]
    if lora_params:
        groups.append({"params": lora_params, "lr": s.lora_lr})
    encoder = model.encoder.module if s.unfreeze_encoder else None
    if encoder is not None:
        for name, param in encoder.named_parameters():
            # Whisper's positional table is fixed sinusoids, frozen as in its own training
            param.requires_grad = not name.startswith("embed_positions")
        encoder.to(device)
        encoder.train()
        model.tuned_encoder = True
        groups.append({"params": [p for p in encoder.parameters() if p.requires_grad],
                       "lr": s.encoder_lr})
    trainable = [p for g in groups for p in g["params"]]
    optim = torch.optim.AdamW(groups, weight_decay=s.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optim, lambda k: min(1.0, (k + 1) / max(
        1, s.warmup)) * 0.5 * (1 + math.cos(math.pi * min(1.0, k / s.steps))))

    step, losses = 0, []
    latest = _latest_checkpoint(out)
    if latest is not None:
        # on the CPU first: a run on a GPU resumes on a CPU machine and back
        state = torch.load(latest / "trainer_state.pt", weights_only=False, map_location="cpu")
        model.adapter.load_state_dict(state["adapter"])
        if encoder is not None and "encoder" in state:
            encoder.load_state_dict(state["encoder"])
        for p, saved in zip(lora_params, state.get("lora", []), strict=False):
            p.data.copy_(saved)
        optim.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        step, losses = state["step"], state["losses"]

    audios: list[Any] = []
    cache: list[Any] = []
    if encoder is None:  # a frozen encoder's states are computed once for the whole set
        cache = _encode_all(model, items, out)
    else:
        audios = [load(it.audio) for it in items]

    rng = random.Random(s.seed * 1000 + step)  # resumed runs draw fresh, reproducible batches
    world, rank = acc.num_processes, acc.process_index
    began = time.perf_counter()
    first_step = step
    while step < s.steps:
        global_batch = [rng.choice(pairs) if len(groups_of_pairs) == 1 else
                        rng.choice(rng.choices(groups_of_pairs, weights)[0])
                        for _ in range(s.batch_size * world)]
        mine = global_batch[rank::world]
        if encoder is not None:
            states, lengths = model.encode_audio([audios[i] for i, _, _ in mine])
        else:
            # (B, T, D) states for an encoder, (B, T) unit ids for a token model
            states = torch.nn.utils.rnn.pad_sequence([cache[i] for i, _, _ in mine],
                                                     batch_first=True)
            lengths = torch.tensor([cache[i].shape[0] for i, _, _ in mine])
        with precision.autocast(mixed, device.type):
            loss = model.loss(states, lengths, [q for _, q, _ in mine],
                              [a for _, _, a in mine])
        optim.zero_grad()
        loss.backward()
        if world > 1:  # average gradients across processes, as DDP would
            for p in trainable:
                if p.grad is not None:
                    p.grad = acc.reduce(p.grad, reduction="mean")
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optim.step()
        schedule.step()
        step += 1
        value = float(acc.reduce(loss.detach(), reduction="mean"))
        losses.append(value)
        if progress and acc.is_main_process:
            progress(step, s.steps, value)
        if acc.is_main_process and (step % s.checkpoint_every == 0 or step == s.steps):
            _checkpoint(out, step, model, lora_params, optim, schedule, losses, config)
        acc.wait_for_everyone()
    elapsed = time.perf_counter() - began
    curve = out / "loss.png"
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
        _plot(losses, curve)
        # not config.json: a user's own config kept in the output folder would be overwritten
        (out / "train-config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    else:
        final = out / "final"
    acc.wait_for_everyone()
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    per_step = elapsed / max(1, step - first_step)
    return TrainResult(final, step, losses[-1] if losses else float("nan"), per_step, peak,
                       curve, world, tuple(losses), mixed)


def _encode_all(model: Any, items: list[Item], out: Path) -> list[Any]:
    """Every clip's frozen encoding. A token model's (unit ids, small) are also kept in
    `<output>/encoded.pt` per clip path, size and mtime, so a rerun or a continued run skips
    the Whisper encoder and reads no audio; latent states are too big to keep and are
    recomputed."""
    torch = require("torch", "latent")
    from speechllm.audio import load
    key = model.cache_key() if hasattr(model, "cache_key") else None
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
    fresh: dict[int, Any] = {}
    with torch.no_grad():
        for start in range(0, len(todo), 16):
            chunk = todo[start:start + 16]
            if hasattr(model, "encode_files"):  # through the units cache (fit, decoder)
                states, lengths = model.encode_files([items[n].audio for n in chunk])
            else:
                states, lengths = model.encode_audio([load(items[n].audio) for n in chunk])
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


def _latest_checkpoint(out: Path) -> Path | None:
    found = sorted((p for p in out.glob("checkpoint-*") if (p / "trainer_state.pt").is_file()),
                   key=lambda p: int(p.name.split("-")[1]))
    return found[-1] if found else None


def _checkpoint(out: Path, step: int, model: Any, lora_params: list[Any], optim: Any,
                schedule: Any, losses: list[float], config: TrainConfig) -> None:
    torch = require("torch", "latent")
    folder = out / f"checkpoint-{step}"
    tmp = out / f".checkpoint-{step}.partial"
    tmp.mkdir(parents=True, exist_ok=True)
    module = model.encoder.module if model.tuned_encoder else None
    torch.save({"step": step, "adapter": model.adapter.state_dict(),
                **({"encoder": module.state_dict()} if module is not None else {}),
                "lora": [p.detach().clone() for p in lora_params],
                "optimizer": optim.state_dict(), "schedule": schedule.state_dict(),
                "losses": losses, "config": config.to_dict()}, tmp / "trainer_state.pt")
    tmp.rename(folder)  # a checkpoint exists whole or not at all
    for old in out.glob("checkpoint-*"):
        if old != folder and (old / "trainer_state.pt").is_file():
            for f in old.iterdir():
                f.unlink()
            old.rmdir()


def _plot(losses: list[float], path: Path) -> None:
    import numpy as np

    matplotlib = require("matplotlib", "eval")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    steps = np.arange(1, len(losses) + 1)
    ax.plot(steps, losses, alpha=0.35, label="loss per step")
    if len(losses) >= 10:
        k = max(5, len(losses) // 30)
        smooth = np.convolve(losses, np.ones(k) / k, mode="valid")
        ax.plot(steps[k - 1:], smooth, label=f"mean of {k} steps")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (answer tokens)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("training loss")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
