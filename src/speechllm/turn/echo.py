"""How much of what the microphone heard is the assistant's own voice coming back.

The server knows what it sent, but not when the client played it, nor how loud it came back.
So the heard clip is slid along everything the answer has said, and at each offset the best
gain is fitted: the share of the clip's energy that a scaled copy of the answer explains at
the best offset (the squared normalised cross-correlation) is the echo's share. A clip of
pure echo scores near 1, a user speaking over a 10 dB quieter echo about 0.1, and the
unknown delay of the client's buffers costs nothing. A room's reverberation lowers the score
of real echo; the judge's transcript check is the second line there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

QUIET = 1e-4  # mean square below which a stretch of the answer is silence, matched by nothing


@dataclass(frozen=True)
class EchoFit:
    share: float  # of the heard clip's energy, explained by the answer's audio (0 to 1)
    offset: int  # where in the answer's audio the clip's first sample matched (may be < 0)
    gain: float  # how loud the echo came back
    residual: np.ndarray  # the clip with the echo taken out


def remove_echo(heard: np.ndarray, said: np.ndarray) -> EchoFit:
    """Fit a scaled, shifted stretch of `said` to `heard` (both at the same rate) and take it
    out: what is left is what the user said over the echo, for the recogniser to hear alone."""
    n = len(heard)
    energy = float(np.dot(heard, heard))
    if n == 0 or len(said) == 0 or energy <= QUIET * n:
        return EchoFit(0.0, 0, 0.0, heard)
    # the clip may start before the answer does, or run past its end: pad with silence
    padded = np.concatenate([np.zeros(n, np.float32), said, np.zeros(n, np.float32)])
    m = len(padded)
    size = 1 << (n + m - 1).bit_length()
    cross = np.fft.irfft(np.fft.rfft(padded, size) * np.conj(np.fft.rfft(heard, size)), size)
    cross = cross[: m - n + 1]  # cross[k] = sum_i heard[i] * padded[k + i]
    run = np.concatenate([[0.0], np.cumsum(padded.astype(np.float64) ** 2)])
    local = run[n:] - run[:-n]  # energy of padded[k : k + n]
    explained = np.where(local > QUIET * n, cross**2 / np.maximum(local, 1e-12), 0.0)
    k = int(explained.argmax())
    if explained[k] <= 0:
        return EchoFit(0.0, 0, 0.0, heard)
    gain = float(cross[k] / local[k])
    residual = (heard - gain * padded[k : k + n]).astype(heard.dtype)
    return EchoFit(float(min(1.0, explained[k] / energy)), k - n, gain, residual)


@dataclass(frozen=True)
class EchoPath:
    """A fitted echo: the microphone's sample `lag + i` holds `gain` times the answer's sample
    `i`. Subtracting it from the live stream lets the VAD hear the user alone, so speech over
    the answer starts and stops where the user's words do."""

    lag: int
    gain: float

    def cancel(self, pcm: np.ndarray, first: int, said: np.ndarray) -> np.ndarray:
        """`pcm` (whose first sample is the stream's sample `first`) without the echo."""
        index = np.arange(first, first + len(pcm)) - self.lag
        inside = (index >= 0) & (index < len(said))
        if not inside.any():
            return pcm
        out = pcm.copy()
        out[inside] -= self.gain * said[index[inside]]
        return out
