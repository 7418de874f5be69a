"""The token recipe's LM training on a GPU against the CPU of the same machine, with the real
trainer (`speechllm train latent`) on the recipe's real batches.

A GPU machine here has no network and no room for the recipe's audio or Gemma's weights, so
the work travels as a pack made where the recipe ran: the recipe's configs and manifests, the
clips' unit ids as the trainer cached them (`encoded.pt`), the units and Gemma 3 270M's config
and tokenizer. On the GPU machine the LM is Gemma 3 270M's architecture with random weights:
a training step does the same arithmetic whatever the weights, so the times are the recipe's,
the losses are not. Each device trains both recipe phases for `--steps` steps (phase 1:
understanding alone; phase 2: understanding and word-interleaved speaking drawn 1:1) in its own
process, the CPU first, as the baseline of the same run. Each then reloads the saved model on
the CPU and checks that its new token rows are the ones trained.

Run on one H200 on 2026-12-04: the recipe's 1100 LM steps in 2.5 min, 4.3x to 4.7x a step on
that machine's 16 CPU cores (docs/benchmarks.md, "Token LM training on a GPU").

    # where the recipe ran (after phase 2 has started, so every clip's units are cached):
    .venv/bin/python bench/train_gpu.py pack -o gpu_pack
    # on the GPU machine (python with torch, transformers, peft, accelerate, soundfile, soxr):
    python3 bench/train_gpu.py run gpu_pack --steps 100 --cpu-steps 6
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "token_digits"
PHASES = {"1": "config-understand.json", "2": "config.json"}
RECIPE_STEPS = {"1": 300, "2": 800}  # phase 2 trains from step 300 to 1100


def manifests(config: Path) -> list[Path]:
    raw = json.loads(config.read_text())["data"]["manifest"]
    return [(config.parent / m).resolve() for m in ([raw] if isinstance(raw, str) else raw)]


def pack(out: Path, run: Path, llm: str) -> None:
    """Copy what `run` needs into `out` (tens of MB)."""
    sys.path.insert(0, str(ROOT / "src"))
    from speechllm.lm.causal import load_causal_lm

    shutil.rmtree(out, ignore_errors=True)
    (out / "data").mkdir(parents=True)
    data_root = (ROOT / "data").resolve()
    for path in {m for c in PHASES.values() for m in manifests(RECIPE / c)}:
        rel = path.relative_to(data_root)
        (out / "data" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, out / "data" / rel)
    shutil.copytree(run / "units", out / "units")
    shutil.copy(run / "encoded.pt", out / "encoded.pt")
    _, tok = load_causal_lm(llm)  # its cached folder holds config.json and the tokenizer
    lm_dir = Path(tok.name_or_path)
    (out / "llm").mkdir()
    for f in lm_dir.iterdir():
        if f.is_file() and not f.name.endswith((".safetensors", ".bin")) \
                and "index" not in f.name:
            shutil.copy(f, out / "llm" / f.name)
    for f in ("config.json", "config-understand.json"):
        shutil.copy(RECIPE / f, out / f)
    print(f"packed {sum(f.stat().st_size for f in out.rglob('*') if f.is_file()) / 1e6:.0f} MB"
          f" into {out}")


def prepare(pack_dir: Path, work: Path) -> None:
    """Placeholder clips where the manifests point, the unit cache keyed to them, and a
    randomly initialised LM of the packed config."""
    import torch
    import transformers

    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(pack_dir / "data", work / "data")
    placed: dict[str, Path] = {}
    for manifest in (work / "data").rglob("*.jsonl"):
        for line in manifest.read_text().splitlines():
            if line.strip():
                audio = (manifest.parent / json.loads(line)["audio"]).resolve()
                audio.parent.mkdir(parents=True, exist_ok=True)
                audio.touch()
                placed[str(audio.relative_to(work / "data"))] = audio
    saved = torch.load(pack_dir / "encoded.pt", weights_only=True)
    clips = {}
    for name, units in saved["clips"].items():
        rel = name.split("|")[0].split("/data/", 1)[-1]
        if rel in placed:
            st = placed[rel].stat()
            clips[f"{placed[rel]}|{st.st_size}|{st.st_mtime_ns}"] = units
    if len(clips) != len(placed):
        raise SystemExit(f"the pack caches units for {len(clips)} of {len(placed)} clips: "
                         "pack after the recipe's phase 2 has started")
    torch.save({"key": saved["key"], "clips": clips}, work / "encoded.pt")
    config = transformers.AutoConfig.from_pretrained(str(pack_dir / "llm"))
    torch.manual_seed(0)
    lm = transformers.AutoModelForCausalLM.from_config(config)
    lm.save_pretrained(str(work / "llm"))
    for f in (pack_dir / "llm").iterdir():
        if not (work / "llm" / f.name).exists():
            shutil.copy(f, work / "llm" / f.name)
    shutil.copytree(pack_dir / "units", work / "units")
    for phase, name in PHASES.items():
        cfg = json.loads((pack_dir / name).read_text())
        cfg["model"].update(llm=str(work / "llm"), units=str(work / "units"))
        raw = cfg["data"]["manifest"]
        cfg["data"]["manifest"] = [str(work / "data" / Path(m).relative_to("../../data"))
                                   for m in ([raw] if isinstance(raw, str) else raw)]
        (work / f"phase{phase}.json").write_text(json.dumps(cfg))


def train_once(work: Path, phase: str, device: str, steps: int) -> dict[str, float]:
    """One phase for `steps` steps in a fresh process (so the trainer sees only `device`)."""
    out = work / f"out-{device}-{phase}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    shutil.copy(work / "encoded.pt", out / "encoded.pt")
    cfg = json.loads((work / f"phase{phase}.json").read_text())
    cfg["train"].update(output=str(out), steps=steps, checkpoint_every=steps)
    (work / f"run-{device}-{phase}.json").write_text(json.dumps(cfg))
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{os.environ.get('PYTHONPATH', '')}"}
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    # then the saved model reloads on the CPU with the new rows the last checkpoint holds
    code = ("import json, sys, torch; from speechllm.train import load_config, train; "
            "from speechllm.tokens.model import TokenSpeechLM; "
            "r = train(load_config(sys.argv[1])); "
            "m = TokenSpeechLM.from_pretrained(r.output); "
            "kept = torch.load(r.output.parent / f'checkpoint-{r.steps}' / 'trainer_state.pt', "
            "map_location='cpu', weights_only=False)['adapter']['weight']; "
            "print(json.dumps({'s_per_step': r.seconds_per_step, 'loss': r.final_loss, "
            "'first': r.losses[0], "
            "'cuda': torch.cuda.is_available(), 'peak_rss_mb': r.peak_rss_mb, "
            "'reloads': bool(torch.equal(m.adapter.weight.detach(), kept)), "
            "'gpu_peak_mb': torch.cuda.max_memory_allocated() / 2**20 "
            "if torch.cuda.is_available() else 0.0}))")
    done = subprocess.run([sys.executable, "-c", code, str(work / f"run-{device}-{phase}.json")],
                          env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{device} phase {phase} failed:\n{done.stderr[-3000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    if (device == "cuda") != bool(result["cuda"]):
        raise SystemExit(f"{device} phase {phase} ran on the wrong device")
    if not result["reloads"]:
        raise SystemExit(f"{device} phase {phase}: the saved model is not what was trained")
    return result


def run(pack_dir: Path, work: Path, steps: int, cpu_steps: int) -> None:
    import torch

    prepare(pack_dir, work)
    name = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
    print(f"torch {torch.__version__}, GPU: {name}, CPU threads: {torch.get_num_threads()}\n")
    print("| device | phase | steps timed | s/step | x CPU | GPU memory GB | loss, first -> last |")
    print("|---|---|---|---|---|---|---|")
    cpu: dict[str, float] = {}
    total = {"cpu": 0.0, "cuda": 0.0}
    devices = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    for device in devices:
        for phase in PHASES:
            r = train_once(work, phase, device, cpu_steps if device == "cpu" else steps)
            if device == "cpu":
                cpu[phase] = r["s_per_step"]
            total[device] += r["s_per_step"] * RECIPE_STEPS[phase]
            print(f"| {device} | {phase} | {cpu_steps if device == 'cpu' else steps} | "
                  f"{r['s_per_step']:.3f} | {cpu[phase] / r['s_per_step']:.1f} | "
                  f"{r['gpu_peak_mb'] / 1024:.1f} | {r['first']:.2f} -> {r['loss']:.2f} |",
                  flush=True)
    print("\nThe recipe's 300 + 800 LM steps at these rates: "
          + ", ".join(f"{d} {total[d] / 60:.1f} min" for d in devices))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack", help="collect what the GPU machine needs")
    p.add_argument("-o", "--out", type=Path, default=Path("gpu_pack"))
    p.add_argument("--llm", default="gemma-3-270m")
    r = sub.add_parser("run", help="time both phases on the CPU, then the GPU")
    r.add_argument("pack", type=Path)
    r.add_argument("--work", type=Path, default=Path("/tmp/train_gpu"))
    r.add_argument("--steps", type=int, default=100, help="GPU steps a phase")
    r.add_argument("--cpu-steps", type=int, default=6, help="CPU steps a phase")
    args = ap.parse_args()
    if args.cmd == "pack":
        pack(args.out, ROOT / "runs" / "token_digits", args.llm)
    else:
        run(args.pack.resolve(), args.work.resolve(), args.steps, args.cpu_steps)


if __name__ == "__main__":
    main()
