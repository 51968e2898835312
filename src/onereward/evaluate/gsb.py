"""Good-Same-Bad (GSB) verdicts of a model against the base, their tallies with 95% intervals, and
the usability proxy (paper Figure 7, Table 2).

A verdict says how model *m* did against the base on one (item, dimension):

- **reward model** (:func:`reward_verdict`): the judge is asked both ways, ``p_mb = P(Yes | m, base)``
  and ``p_bm = P(Yes | base, m)``. Good only when both orders agree beyond the margin
  (``p_mb > 0.5 + margin`` and ``p_bm < 0.5 - margin``), Bad in the mirror case, Same otherwise.
  A judge that leans towards the first (or second) image says Yes (or No) in both orders, which
  never agrees, so position bias turns into Same instead of a win;
- **scores** (:func:`score_verdict`, the oracle): Good when m's score beats the base's by more
  than the margin, Bad when it trails by more, Same otherwise;
- **people** (the blind A/B project, :mod:`onereward.annotate.ab`): left/right/same mapped back
  through the hidden assignment.

Swapping the two models swaps Good and Bad in every rule. A tally counts good, same and bad over
units; its shares carry Wilson score intervals (95%), and so does the win rate with ties dropped,
``good / (good + bad)``; ``net = (good - bad) / n`` is the figure a GSB bar shows.

**Usability proxy**: an item is usable when no dimension of its task is Bad against the base
(the judge rates it at least as good on every dimension); the share of usable items per group.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from onereward.stats import Z95, wilson_interval  # noqa: F401  (wilson_interval: re-exported)

GOOD, SAME, BAD = "good", "same", "bad"
VERDICTS: tuple[str, ...] = (GOOD, SAME, BAD)
MIRROR = {GOOD: BAD, SAME: SAME, BAD: GOOD}


def reward_verdict(p_model_first: float, p_base_first: float, margin: float) -> str:
    """GSB of a model against the base from the reward model asked in both orders."""
    hi, lo = 0.5 + margin, 0.5 - margin
    if p_model_first > hi and p_base_first < lo:
        return GOOD
    if p_model_first < lo and p_base_first > hi:
        return BAD
    return SAME


def score_verdict(model_score: float, base_score: float, margin: float) -> str:
    """GSB of a model against the base from a score each (higher is better)."""
    diff = float(model_score) - float(base_score)
    if diff > margin:
        return GOOD
    if diff < -margin:
        return BAD
    return SAME


@dataclass(frozen=True)
class Tally:
    """Good, same and bad counts of one (task, dimension) cell or of a pooled group."""

    good: int = 0
    same: int = 0
    bad: int = 0

    @classmethod
    def of(cls, verdicts: Iterable[str]) -> Tally:
        counts = {GOOD: 0, SAME: 0, BAD: 0}
        for v in verdicts:
            if v not in counts:
                raise ValueError(f"verdict: expected one of {VERDICTS}, got {v!r}")
            counts[v] += 1
        return cls(counts[GOOD], counts[SAME], counts[BAD])

    @property
    def n(self) -> int:
        return self.good + self.same + self.bad

    @property
    def net(self) -> float:
        """(good - bad) / n: 0 for an even split or all Same (0 when n is 0)."""
        return (self.good - self.bad) / self.n if self.n else 0.0

    @property
    def win_rate(self) -> float | None:
        """good / (good + bad), ties dropped (None without a decisive unit)."""
        decisive = self.good + self.bad
        return self.good / decisive if decisive else None

    def mirrored(self) -> Tally:
        """The tally of the base against the model."""
        return Tally(self.bad, self.same, self.good)

    def to_dict(self) -> dict[str, float | int | None]:
        """``good, same, bad, n`` plus shares with Wilson 95% intervals, net, and the win rate (ties
        dropped) with its interval."""
        out: dict[str, float | int | None] = {
            "good": self.good,
            "same": self.same,
            "bad": self.bad,
            "n": self.n,
        }
        for name in VERDICTS:
            k = getattr(self, name)
            low, high = wilson_interval(k, self.n)
            out[f"{name}_share"] = round(k / self.n, 6) if self.n else 0.0
            out[f"{name}_low"], out[f"{name}_high"] = round(low, 6), round(high, 6)
        out["net"] = round(self.net, 6)
        decisive = self.good + self.bad
        win = self.win_rate
        out["win_rate"] = None if win is None else round(win, 6)
        low, high = wilson_interval(self.good, decisive)
        out["win_rate_low"], out["win_rate_high"] = (
            (None, None) if win is None else (round(low, 6), round(high, 6))
        )
        return out


def tally_cells(
    verdicts: Iterable[tuple[str, str, str]], groups: Iterable[str], dimensions: Mapping[str, Iterable[str]]
) -> dict[str, dict[str, Tally]]:
    """``{group: {dimension: Tally}}`` from ``(group, dimension, verdict)`` units; every group's
    dimensions are present (empty tallies where no unit fell)."""
    buckets: dict[tuple[str, str], list[str]] = {}
    for group, dim, verdict in verdicts:
        buckets.setdefault((group, dim), []).append(verdict)
    return {g: {d: Tally.of(buckets.get((g, d), [])) for d in dimensions[g]} for g in groups}


def pooled(cells: Mapping[str, Mapping[str, Tally]]) -> dict[str, Tally]:
    """Per group, the tally pooled over its dimensions."""
    return {
        g: Tally(
            sum(t.good for t in dims.values()),
            sum(t.same for t in dims.values()),
            sum(t.bad for t in dims.values()),
        )
        for g, dims in cells.items()
    }


def usability(
    item_verdicts: Mapping[str, tuple[str, Iterable[str]]], groups: Iterable[str]
) -> dict[str, float | None]:
    """Share of usable items per group from ``{item_id: (group, verdicts of its dimensions)}``:
    usable = no Bad dimension. None for a group without items."""
    totals: dict[str, list[int]] = {g: [0, 0] for g in groups}
    for group, verdicts in item_verdicts.values():
        totals.setdefault(group, [0, 0])
        totals[group][1] += 1
        totals[group][0] += int(all(v != BAD for v in verdicts))
    return {g: (round(k / n, 6) if n else None) for g, (k, n) in totals.items()}
