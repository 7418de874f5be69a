"""Exceptions users see. Each message says what was wrong and what to do."""

from __future__ import annotations


class SpeechLLMError(Exception):
    """Base class: the CLI prints these as one line and exits with `exit_code`.

    Exit codes: 0 success, 1 unexpected failure, 2 bad command line, 3 unusable input
    (audio, text), 4 model missing or damaged, 5 optional dependency missing, 130 interrupted.
    """

    exit_code = 1


class AudioError(SpeechLLMError, ValueError):
    """Audio that cannot be used: missing, empty, corrupt, not audio, too long."""

    exit_code = 3


class ModelError(SpeechLLMError):
    """A model file is missing, damaged, or cannot be loaded."""

    exit_code = 4


class MissingDependency(SpeechLLMError, ImportError):
    """An optional library is not installed; the message carries the install command."""

    exit_code = 5


class NoSpeechError(AudioError):
    """The audio holds no speech (silence or noise only)."""
