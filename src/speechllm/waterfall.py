"""A text waterfall of a response's stage spans, for terminals and logs."""

from __future__ import annotations

from speechllm.timing import Timings


def waterfall(timings: Timings, width: int = 40) -> list[str]:
    """One line per span: name, start-end in seconds, and a bar placed on a shared time axis,
    followed by the ttft/ttfa/total line."""
    total = max(timings.total, 1e-9)
    lines = []
    for s in timings.spans:
        a = round(s.start / total * width)
        b = max(a + 1, round(s.end / total * width))
        bar = " " * a + "█" * (b - a)
        lines.append(f"{s.name:<12}{s.start:7.2f}-{s.end:5.2f}s |{bar:<{width}}|")
    marks = []
    if timings.ttft is not None:
        marks.append(f"ttft {timings.ttft:.2f}s")
    if timings.ttfa is not None:
        marks.append(f"ttfa {timings.ttfa:.2f}s")
    marks.append(f"total {timings.total:.2f}s")
    lines.append("  ".join(marks))
    return lines
