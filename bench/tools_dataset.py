"""Speak bench/texts/tools.jsonl into data/tools/ (WAVs + manifest.jsonl) for the `tools` task:
each request in its planned voice (Piper joe, espeak-ng en-us, en-gb+f3) and noise (clean,
white noise at 10 or 0 dB SNR).

    ./dev python bench/tools_dataset.py
    ./dev speechllm eval data/tools/manifest.jsonl --task tools --run tools-constrained
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from speechllm.data import read_manifest, write_manifest
from speechllm.eval.synth import SynthSpec, synthesize_dataset

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ROOT / "bench" / "texts" / "tools.jsonl"


def main(out: Path = ROOT / "data" / "tools") -> None:
    rows = [json.loads(line) for line in TEXTS.read_text().splitlines() if line.strip()]
    groups: dict[tuple[str, object], list[tuple[str, dict]]] = {}
    for row in rows:
        key = (row.pop("voice_plan"), row.pop("snr_plan"))
        groups.setdefault(key, []).append((row.pop("text"), row))
    items = []
    for (voice, snr), texts in groups.items():
        part = out / "parts" / f"{voice.replace(':', '_').replace('+', '_')}-{snr}"
        spec = SynthSpec(voices=(voice,), snrs=(None if snr == "clean" else float(snr),))
        items += read_manifest(synthesize_dataset(texts, part, spec))
        print(f"{voice} snr={snr}: {len(texts)} requests", file=sys.stderr)
    path = write_manifest(items, out / "manifest.jsonl")
    test = write_manifest([it for it in items if it.fields.get("split") == "test"],
                          out / "manifest-test.jsonl")  # for the slow settings
    print(f"wrote {path}: {len(items)} items, and {test}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "data" / "tools")
