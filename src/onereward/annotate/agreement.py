"""Inter-annotator agreement on categorical answers: pairwise agreement and Krippendorff's alpha.

A *unit* is one (task, dimension); each annotator's answer is a label such as ``"A>C"`` (best A,
worst C) or ``"none"`` (no clear difference). Units with fewer than two answers carry no
information about agreement and are left out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from itertools import combinations


def pairwise_agreement(units: Sequence[Sequence[str]]) -> float | None:
    """Fraction of annotator pairs (within a unit) that gave the same label; None without pairs."""
    same = total = 0
    for labels in units:
        for a, b in combinations(labels, 2):
            total += 1
            same += a == b
    return same / total if total else None


def krippendorff_alpha_nominal(units: Sequence[Sequence[str]]) -> float | None:
    """Krippendorff's alpha for nominal labels (missing answers allowed); None when undefined.

    alpha = 1 - D_o / D_e with the coincidence matrix o_ck = sum_u n_uck / (m_u - 1), observed
    disagreement D_o = sum_{c != k} o_ck / n and expected D_e = sum_{c != k} n_c n_k / (n (n - 1)).
    Undefined (None) when fewer than two answers are pairable or every answer has the same label.
    """
    pairable = [list(u) for u in units if len(u) >= 2]
    n = sum(len(u) for u in pairable)
    if n < 2:
        return None
    observed = 0.0
    totals: Counter[str] = Counter()
    for labels in pairable:
        m = len(labels)
        counts = Counter(labels)
        totals.update(counts)
        # Disagreeing ordered pairs within the unit, weighted 1 / (m - 1).
        observed += (m * m - sum(c * c for c in counts.values())) / (m - 1)
    expected = (n * n - sum(c * c for c in totals.values())) / (n - 1)
    if expected == 0:
        return None
    return 1.0 - observed / expected
