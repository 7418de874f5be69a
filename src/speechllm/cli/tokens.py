"""`speechllm tokens ...`: discrete audio tokens (fit, train-u2s, train-vocoder, encode,
decode, align, say)."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from speechllm.cli.common import err, exits_on_error, fail, out, progress, step_report
from speechllm.errors import ModelError, SpeechLLMError


class TokenKind(StrEnum):
    units = "units"
    rvq = "rvq"


def fit(
    manifests: Annotated[list[Path], typer.Argument(
        help="JSONL manifest(s) of the audio to fit on, fitted on together.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Tokenizer folder.")],
    kind: Annotated[TokenKind, typer.Option(help="units: k-means over Whisper encoder "
                    "states (semantic); rvq: residual VQ of log-mel frames (acoustic).")] = (
        TokenKind.units),
    k: Annotated[int, typer.Option("-k", help="Codes per codebook.")] = 200,
    stages: Annotated[int, typer.Option(help="RVQ codebooks (rvq only).")] = 8,
    encoder: Annotated[str, typer.Option(help="Whisper encoder (units only).")] = "whisper-base",
    window: Annotated[float, typer.Option(help="Encoder window in seconds (units only; "
                      "shorter is faster, longer audio is cut into windows).")] = 10.0,
    fitted_windows: Annotated[bool, typer.Option(help="Pad each clip to the shortest of "
                              "the window, half of it, a quarter, ... that holds it (units "
                              "only): short clips encode faster, with other states than a "
                              "fixed window.")] = False,
    shortest_window: Annotated[float, typer.Option(help="The shortest fitted window in "
                               "seconds (units only; 1 s windows lost digit accuracy).")] = 2.0,
    rate: Annotated[float, typer.Option(help="Units per second (units only): 50 keeps every "
                    "Whisper encoder state, 25 pools two, 12.5 four.")] = 25.0,
    seed: Annotated[int, typer.Option(help="k-means seed.")] = 0,
) -> None:
    """Fit a tokenizer on the audio of one or more manifests and save it."""
    from speechllm.audio import load
    from speechllm.data import read_manifest
    from speechllm.tokens.semantic import STATE_RATE

    # the encoder gives 50 states/s, so a rate is a whole number of states pooled per unit
    stride = round(STATE_RATE / rate) if rate > 0 else 0
    if stride < 1 or abs(STATE_RATE / stride - rate) > 0.01 * rate:
        raise fail(ValueError(f"--rate {rate:g}: units are {STATE_RATE} Whisper encoder "
                              f"states/s pooled a whole number at a time (50, 25, 16.67, "
                              "12.5, ...)"))
    with exits_on_error():
        items = [item for manifest in manifests for item in read_manifest(manifest)]
        with progress(transient=True) as bar:
            job = bar.add_task("reading audio", total=len(items))
            audios = []
            for item in items:
                audios.append(load(item.audio))
                bar.advance(job)
            bar.update(job, description="features", completed=0)

            def show(done: int, total: int) -> None:
                bar.update(job, completed=done, total=total)

            if kind == TokenKind.units:
                from speechllm.tokens.semantic import KMeansUnits, UnitsConfig
                from speechllm.tokens.unit_cache import UnitCache, file_stamp
                tok: Any
                tok, fitted = KMeansUnits.fit_and_encode(
                    audios, UnitsConfig(encoder=encoder, k=k, stride=stride,
                                        window_seconds=window,
                                        fitted_windows=fitted_windows,
                                        shortest_window=shortest_window), seed, show)
                # the clips' units, for the decoder and the token LM trained on these units
                UnitCache(tok).put({file_stamp(item.audio): u
                                    for item, u in zip(items, fitted, strict=True)})
            else:
                from speechllm.tokens.acoustic import MelRVQ, RVQConfig
                tok = MelRVQ.fit(audios, RVQConfig(stages=stages, k=k), seed, show)
        tok.save(output)
    seconds = sum(a.duration for a in audios)
    out.print(f"fitted {tok.info.name} on {len(audios)} files ({seconds:.0f} s): "
              f"{tok.info.bitrate:.0f} bit/s; saved {output}", highlight=False)


def train_u2s(
    manifests: Annotated[list[Path], typer.Argument(
        help="JSONL manifest(s) of one voice's speech, trained on together.")],
    units: Annotated[Path, typer.Option(help="A unit tokenizer folder (tokens fit --kind "
                     "units).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Unit-to-speech folder.")],
    steps: Annotated[int, typer.Option(help="Training steps.")] = 1500,
    batch_size: Annotated[int, typer.Option(help="Clips per training step.", min=1)] = 16,
    centroid_inputs: Annotated[bool, typer.Option(
        help="Also feed each unit's k-means centroid, so units that sound alike start alike."
    )] = False,
    max_dilation: Annotated[int, typer.Option(
        help="Largest dilation of the network's blocks (a power of two): how much context "
             "each frame sees (8: +-1.5 s, 1: +-0.4 s).")] = 8,
    dropout: Annotated[float, typer.Option(
        help="Dropout on each block's output while training, so the network does not "
             "memorise its clips' exact unit sequences.")] = 0.2,
    channels: Annotated[int, typer.Option(
        help="Width of the network's blocks: its compute grows with the square.")] = 256,
    autocast: Annotated[str, typer.Option(
        help="bfloat16 products while training: auto (where the CPU has them in hardware: "
             "AVX-512 BF16 or AMX), bf16 or off.")] = "off",
    lm: Annotated[Path | None, typer.Option(
        help="A token model (same units) whose teacher-forced predictions half the examples "
             "read instead of the clip's units, so the decoder renders its near misses. The "
             "manifests need word timings if it was trained with interleave_words.")] = None,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
) -> None:
    """Train a unit-to-speech decoder (units -> log-mel -> Griffin-Lim) on a voice."""
    from speechllm.audio import load
    from speechllm.data import read_manifest
    from speechllm.tokens.semantic import KMeansUnits
    from speechllm.tokens.teacher_forcing import TeacherForced
    from speechllm.tokens.unit2speech import U2SConfig, UnitToSpeech
    from speechllm.tokens.unit_cache import encode_files

    with exits_on_error():
        tok = KMeansUnits.load(units)
        items = [item for m in manifests for item in read_manifest(m)]
        audios = [load(item.audio) for item in items]
        with progress(loss=True) as bar:
            forced = None
            if lm is not None:
                forcing = bar.add_task("teacher forcing", total=len(items), loss="")
                forced = TeacherForced(lm, tok, items, lambda: bar.advance(forcing))
            units_job = bar.add_task("units", total=len(items), loss="")
            codes = encode_files(tok, [item.audio for item in items], progress=lambda d, t:
                                 bar.update(units_job, completed=d, total=t),
                                 audio=audios.__getitem__)  # loaded above for the mel
            bar.update(units_job, completed=len(items))
            job = bar.add_task("training", total=steps, loss="loss -")
            u2s = UnitToSpeech.train(audios, tok, U2SConfig.for_units(
                tok, steps=steps, batch_size=batch_size, centroid_inputs=centroid_inputs,
                max_dilation=max_dilation, dropout=dropout, channels=channels,
                autocast=autocast), seed, step_report(bar, job, 50), forced, codes)
        u2s.save(output)
    if forced is not None:
        out.print(f"the token model's teacher-forced units equal the clips' on "
                  f"{forced.agreement():.1%} of frames", highlight=False)
    out.print(f"trained unit-to-speech on {len(audios)} files for {steps} steps; saved "
              f"{output}", highlight=False)


def train_vocoder(
    manifest: Annotated[Path, typer.Argument(help="JSONL manifest of the speech to learn "
                                             "from (one voice is best).")],
    tokenizer: Annotated[Path, typer.Option(help="A mel RVQ or unit-to-speech folder: the "
                         "vocoder is saved in its vocoder/ and decodes for it from then on.")],
    steps: Annotated[int, typer.Option(help="Training steps.")] = 3000,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
) -> None:
    """Train the small neural vocoder (log-mel -> waveform) for a tokenizer's mel frames."""
    from speechllm.audio import load
    from speechllm.data import read_manifest
    from speechllm.tokens.load import load_tokenizer

    with exits_on_error():
        tok = load_tokenizer(tokenizer)
        if not hasattr(tok, "vocoder"):
            raise SpeechLLMError(f"{tokenizer}: {tok.info.name} does not decode through "
                                 "log-mel frames; give a mel RVQ or unit-to-speech folder")
        from speechllm.tokens.unit2speech import MEL
        from speechllm.tokens.vocoder import MelVocoder, VocoderConfig

        mel = tok.config.mel if hasattr(tok.config, "mel") else MEL
        audios = [load(item.audio) for item in read_manifest(manifest)]
        with progress("training", loss=True) as bar:
            job = bar.add_task("train", total=steps, loss="loss -")
            vocoder = MelVocoder.train(audios, VocoderConfig(mel=mel, steps=steps), seed,
                                       step_report(bar, job, 50))
        vocoder.save(tokenizer / "vocoder")
    out.print(f"trained a vocoder on {len(audios)} files for {steps} steps; saved "
              f"{tokenizer / 'vocoder'}", highlight=False)


def encode(
    tokenizer: Annotated[Path, typer.Argument(help="Tokenizer or codec folder.")],
    audio: Annotated[list[Path], typer.Argument(help="Audio files.")],
    dedup_units: Annotated[bool, typer.Option("--dedup", help="Collapse repeated units "
                           "(single-codebook tokenizers).")] = False,
) -> None:
    """Print each file's codes as JSON Lines: {"audio", "tokenizer", "codes": [[...], ...]}."""
    from speechllm.audio import load
    from speechllm.tokens.base import dedup
    from speechllm.tokens.load import load_tokenizer

    with exits_on_error():
        tok = load_tokenizer(tokenizer)
        for path in audio:
            codes = tok.encode(load(path, None))
            if dedup_units:
                codes = tuple(dedup(c)[0] for c in codes)
            out.print(json.dumps({"audio": str(path), "tokenizer": tok.info.name,
                                  "codes": [c.tolist() for c in codes]}), highlight=False,
                      markup=False)


def decode(
    tokenizer: Annotated[Path, typer.Argument(help="Tokenizer or codec folder that decodes.")],
    codes_file: Annotated[Path, typer.Argument(help="JSON Lines from `tokens encode`.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output audio (a -N suffix "
                      "per line when there are several).")],
    griffin_lim: Annotated[bool, typer.Option("--griffin-lim", help="Decode with Griffin-Lim "
                           "even when the folder has a trained vocoder.")] = False,
) -> None:
    """Turn codes back into audio."""
    import numpy as np

    from speechllm.audio import save
    from speechllm.tokens.load import load_tokenizer

    try:
        with exits_on_error():
            tok = load_tokenizer(tokenizer)
            if not hasattr(tok, "decode"):
                raise SpeechLLMError(f"{tok.info.name} has no decoder (units need a "
                                     "unit-to-speech model)")
            if griffin_lim and hasattr(tok, "vocoder"):
                tok.vocoder = None
            lines = [x for x in codes_file.read_text().splitlines() if x.strip()]
            for n, line in enumerate(lines, 1):
                try:
                    codes = tuple(np.asarray(c, np.int64) for c in json.loads(line)["codes"])
                except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                    raise SpeechLLMError(f"{codes_file}:{n}: not a codes line ({exc})"
                                         ) from None
                target = output if len(lines) == 1 else output.with_name(
                    f"{output.stem}-{n}{output.suffix}")
                save(tok.decode(codes), target)
                out.print(f"wrote {target}", highlight=False)
    except OSError as exc:
        raise fail(SpeechLLMError(f"{codes_file}: {exc.strerror}")) from None


def align(
    manifest: Annotated[Path, typer.Argument(help="JSONL manifest with each clip's text.")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Manifest to write "
                      "(default: <manifest>.aligned.jsonl beside it).")] = None,
    asr: Annotated[str, typer.Option(help="Whisper model for the forced alignment.")] = (
        "whisper-base"),
    redo: Annotated[bool, typer.Option("--redo", help="Align every clip again, even those "
                    "the output already has timings for.")] = False,
    pack: Annotated[float, typer.Option("--pack", min=0, max=29.0, help="Seconds of clips "
                    "aligned together in one Whisper window (it encodes 30 s whatever the "
                    "clip's length; about 14x faster on 1-2 s clips). 0: one clip at a "
                    "time.")] = 29.0,
) -> None:
    """Add word timings to each clip, for token models that speak word by word.

    Each row gets "words": a list of (word, start, end) in seconds. Needed by
    `"interleave_words": true`. Resumes: clips the output already aligned (same audio, same
    text) keep their timings, and so do those an interrupted run had aligned."""
    from speechllm.asr.base import ASR_BACKENDS
    from speechllm.tokens.align_manifest import align_manifest

    target = output or manifest.with_name(manifest.stem + ".aligned.jsonl")
    with exits_on_error(), progress("aligning", transient=True) as bar:
        job = bar.add_task("align", total=None)
        done = align_manifest(manifest, target, lambda: ASR_BACKENDS.get("faster-whisper")(asr),
                              redo, pack, lambda d, t: bar.update(job, completed=d, total=t))
    failed = done.failed
    for line in failed[:10]:
        err.print(f"not aligned: {line}", highlight=False, markup=False)
    if len(failed) > 10:
        err.print(f"not aligned: ... and {len(failed) - 10} more", highlight=False)
    out.print(f"aligned {done.rows - len(failed)} of {done.rows} clips ({done.kept} kept from "
              f"before); wrote {target}", highlight=False)
    if done.rows and len(failed) == done.rows:  # nothing to train on: a script should stop
        raise typer.Exit(1)


def say(
    model: Annotated[Path, typer.Argument(help="A trained token model folder (TokenSpeechLM "
                                          "with a unit-to-speech decoder).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output audio file; with "
                                         "--lines, a folder.")],
    text: Annotated[str | None, typer.Argument(help="What to say (or give --lines).")] = None,
    lines: Annotated[Path | None, typer.Option("--lines", help="A text file, one phrase a "
                     "line: each is said into the -o folder (0000.wav, ...) with a "
                     "manifest.jsonl of texts and files; a rerun keeps what it finished.")] = None,
    batch_size: Annotated[int, typer.Option(help="With --lines: phrases the model says at "
                          "once (the same audio at any size, faster in batches).")] = 8,
) -> None:
    """Speak text with a token LM: text -> units (the LM) -> waveform (unit-to-speech)."""
    from speechllm.audio import save
    from speechllm.tokens.model import TokenSpeechLM
    from speechllm.tokens.say_lines import read_lines, say_lines

    if (text is None) == (lines is None):
        raise fail(ValueError("give the text to say, or --lines FILE (not both)"))
    if lines is None:
        assert text is not None
        with exits_on_error():
            audio = TokenSpeechLM.from_pretrained(model).say(text)
            save(audio, output)
        out.print(f"wrote {output} ({audio.duration:.2f} s)", highlight=False)
        return

    def load() -> TokenSpeechLM:
        lm = TokenSpeechLM.from_pretrained(model)
        if lm.voice is None:
            raise ModelError(f"{model}: this token model has no unit-to-speech decoder to "
                             "speak with")
        return lm

    with exits_on_error():
        if batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1, not {batch_size}")
        texts = read_lines(lines)
        with progress("saying", transient=True) as bar:
            job = bar.add_task("saying", total=len(texts))
            done = say_lines(load, texts, output, batch_size,
                             lambda d, t: bar.update(job, completed=d, total=t))
    if done.kept == done.phrases:
        out.print(f"all {done.phrases} phrases said before; nothing to do ({done.index})",
                  highlight=False)
        return
    for line in done.failed:
        err.print(f"not said: {line}", highlight=False, markup=False)
    out.print(f"said {done.said} of {done.phrases} phrases ({done.kept} kept from before); "
              f"wrote {done.index}", highlight=False)
    if done.failed:
        raise typer.Exit(1)
