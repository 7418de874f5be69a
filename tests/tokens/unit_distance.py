"""How far apart two unit sequences are, for tests that compare what a model says."""


def unit_distance(a: list[int], b: list[int]) -> float:
    """Edit distance between unit sequences, over the longer length."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1] / max(len(a), len(b), 1)
