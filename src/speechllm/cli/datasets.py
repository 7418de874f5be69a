"""Commands that make datasets: synth (speech from text) and import (manifests)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from speechllm.cli.common import err, exits_on_error, out, progress


def synth(
    texts: Annotated[Path, typer.Argument(help="Texts: one per line, or JSONL with \"text\" "
                                                "and task fields.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Dataset folder.")],
    voices: Annotated[str, typer.Option(help="Comma-separated backend[:voice].")] = (
        "piper,espeak:en-us,espeak:en-gb+f3"),
    rates: Annotated[str, typer.Option(help="Comma-separated speed factors.")] = "1.0",
    snr: Annotated[str, typer.Option(help="Comma-separated SNRs in dB; 'clean' for none.")] = (
        "clean"),
    effects: Annotated[str, typer.Option(help="Comma-separated 'clean' or perturbations "
                                               "without commas (telephone, reverb:rt60=0.4, "
                                               "speed:factor=0.9).")] = "clean",
    seed: Annotated[int, typer.Option(help="Noise seed.")] = 0,
    workers: Annotated[int | None, typer.Option(help="Processes rendering clips (default: one "
                                                     "per core).", min=1)] = None,
) -> None:
    """Synthesise a speech dataset (WAVs + manifest.jsonl) from text with the local voices.

    One clip for every text x voice x rate x SNR x effect."""
    from speechllm.eval.synth import SynthSpec, read_texts, synthesize_dataset

    with exits_on_error():
        spec = SynthSpec(
            voices=tuple(v.strip() for v in voices.split(",") if v.strip()),
            rates=tuple(float(r) for r in rates.split(",")),
            snrs=tuple(None if x.strip() == "clean" else float(x) for x in snr.split(",")),
            effects=tuple(None if x.strip() == "clean" else x.strip()
                          for x in effects.split(",")),
            seed=seed,
        )
        rows = read_texts(texts)
        with progress("synthesising") as bar:
            job = bar.add_task("synth", total=None)
            manifest = synthesize_dataset(
                rows, output, spec, lambda done, total: bar.update(job, completed=done,
                                                                   total=total), workers)
    count = sum(1 for _ in manifest.open())
    out.print(f"wrote {count} utterances: {manifest}", highlight=False)


def import_cmd(
    source: Annotated[Path, typer.Argument(help="A folder of audio with .txt transcripts, a "
                                                ".csv/.tsv table, or a Hugging Face dataset "
                                                "folder saved with save_to_disk.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Manifest to write (.jsonl); "
                                         "a dataset's audio goes in clips/ beside it.")],
    split: Annotated[str | None, typer.Option(help="Split of a saved DatasetDict.")] = None,
    audio_column: Annotated[str, typer.Option(help="Audio column (tables, datasets).")] = (
        "audio"),
    text_column: Annotated[str, typer.Option(help="Transcript column.")] = "text",
) -> None:
    """Turn a folder, a CSV/TSV or a saved Hugging Face dataset into a JSONL manifest."""
    from speechllm import data

    with exits_on_error():
        saved = ("dataset_dict.json", "dataset_info.json")
        if source.is_dir() and any((source / name).is_file() for name in saved):
            with err.status("reading the dataset"):
                items = data.from_hf_disk(source, output.parent, split, audio_column,
                                          text_column)
        elif source.suffix.lower() in (".csv", ".tsv"):
            items = data.from_table(source, audio_column, text_column)
        else:
            items = data.from_folder(source)
        data.write_manifest(items, output)
    out.print(f"wrote {len(items)} items: {output}", highlight=False)
