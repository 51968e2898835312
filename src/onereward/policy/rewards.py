"""Rewards for RL from the one reward model.

- :class:`PairwiseReward`: P(Yes | a, b, q_e) for every dimension e of each condition's task, the
  reward model's own comparison (paper Eq. 4-5); differentiable w.r.t. the images of ``a``.
- :class:`LogitScore`: UniWorld-V2's training-free score: the VLM is asked to rate the edit from 0
  to 5, and the score is the expectation over the six digit tokens' probabilities at the answer
  position, normalised to [0, 1] (their Eq. 10-11).
- :class:`OracleReward`: the synthetic world's oracle, per dimension, normalised per (item,
  dimension) between noise and the target. No model judges: it is the skyline of what RL reaches
  with a perfect judge (``nft_reward: oracle``), which separates the reward model's limits from the
  generator's and the algorithm's. Synthetic world only (every condition needs its target).
- :func:`load_reward_model`: reads a ``reward_model`` artifact and applies the accuracy gate to
  the task x dimension cells the run needs (the error carries the figures).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from onereward.artifacts import Manifest, read_artifact
from onereward.policy.conditions import Condition
from onereward.reward import gate
from onereward.reward.scoring import RewardScorer


def load_reward_model(
    path: str,
    *,
    cells: list[tuple[str, str]],
    threshold: float,
    override: bool,
    rule: str = "interval",
    device: str,
    dtype: torch.dtype,
) -> tuple[RewardScorer, Manifest, gate.GateResult]:
    """The reward model (frozen, eval mode) after the gate on ``cells``; wrong kinds are refused."""
    manifest = read_artifact(path, kind="reward_model", what="--reward-model")
    result = gate.check(path, threshold=threshold, required=cells, override=override, rule=rule)
    scorer = RewardScorer.load(path, device=device, dtype=dtype, trainable=False)
    return scorer, manifest, result


@dataclass
class Comparisons:
    """The (condition index, dimension) of every comparison of a batch, in order."""

    index: list[int]
    tasks: list[str]
    dimensions: list[str]
    prompts: list[str | None]

    @classmethod
    def of(cls, conds: Sequence[Condition]) -> Comparisons:
        out = cls([], [], [], [])
        for i, c in enumerate(conds):
            for d in c.dimensions:
                out.index.append(i)
                out.tasks.append(c.task)
                out.dimensions.append(d)
                out.prompts.append(c.prompt)
        return out

    def per_condition_mean(
        self, values: torch.Tensor, n: int, weights: dict[str, float] | None = None
    ) -> torch.Tensor:
        """Mean of ``values`` (one per comparison) over each condition's dimensions: shape [n].
        ``weights``: {dimension: w} for a weighted mean (dimensions not named weigh 1); a condition
        whose dimensions all weigh 0 gets 0."""
        idx = torch.tensor(self.index, device=values.device)
        w = torch.ones_like(values)
        if weights:
            w = torch.tensor(
                [weights.get(d, 1.0) for d in self.dimensions], device=values.device, dtype=values.dtype
            )
        zeros = torch.zeros(n, device=values.device, dtype=values.dtype)
        sums = zeros.index_add(0, idx, values * w)
        totals = zeros.index_add(0, idx, w)
        return sums / totals.clamp_min(torch.finfo(values.dtype).tiny)


class PairwiseReward:
    """P(Yes | a, b, q_e) per dimension of each condition's task, from the one reward model.

    ``orders="both"`` asks the reward model in both orders and returns
    ``(P(Yes | a, b) + 1 - P(Yes | b, a)) / 2``: the position bias of a pairwise judge cancels (the
    reward model's ``accuracy_symmetric`` measures that decision), at twice the reward compute."""

    def __init__(self, scorer: RewardScorer, *, batch_size: int = 32, orders: str = "policy_first") -> None:
        if orders not in ("policy_first", "both"):
            raise ValueError(f"reward orders: expected 'policy_first' or 'both', got {orders!r}")
        self.scorer = scorer
        self.batch_size = batch_size
        self.orders = orders

    def p_yes(
        self, images_a: torch.Tensor, images_b: torch.Tensor, conds: Sequence[Condition], *, grad: bool
    ) -> tuple[torch.Tensor, Comparisons]:
        """P(Yes) for every (condition, dimension): images [B, 3, H, W] in [0, 1], one size."""
        p, comps = self._p_yes(images_a, images_b, conds, grad=grad)
        if self.orders == "both":
            swapped, _ = self._p_yes(images_b.to(images_a.device), images_a, conds, grad=grad)
            p = 0.5 * (p + 1.0 - swapped)
        return p, comps

    def _p_yes(
        self, images_a: torch.Tensor, images_b: torch.Tensor, conds: Sequence[Condition], *, grad: bool
    ) -> tuple[torch.Tensor, Comparisons]:
        comps = Comparisons.of(conds)
        idx = torch.tensor(comps.index, device=images_a.device)
        a, b = images_a.index_select(0, idx), images_b.to(images_a.device).index_select(0, idx)
        context = {}
        if self.scorer.template.context_images:
            src = (
                torch.stack([torch.from_numpy(conds[i].source).permute(2, 0, 1) for i in comps.index]).float()
                / 255
            )
            msk = torch.stack([torch.from_numpy(conds[i].mask.astype(np.float32))[None] for i in comps.index])
            context = {"sources": src.to(a.device), "masks": msk.to(a.device)}
        p = self.scorer.p_yes(
            a,
            b,
            comps.tasks,
            comps.dimensions,
            comps.prompts,
            grad=grad,
            batch_size=self.batch_size,
            **context,
        )
        return p.to(images_a.device), comps


SCORE_TOKENS = ("0", "1", "2", "3", "4", "5")
SCORE_QUERY = (
    "Task: {task_name}. The first image is the source with the region to edit; the second image is the "
    "result. {definition}{prompt_clause} Rate the result in {dimension_name} from 0 (worst) to 5 (best). "
    "Answer with one digit."
)


class LogitScore:
    """Training-free score (UniWorld-V2 Eq. 10-11): E[digit] over {0..5} at the answer position / 5."""

    def __init__(self, scorer: RewardScorer, *, batch_size: int = 32) -> None:
        self.scorer = scorer
        self.batch_size = batch_size
        tok = scorer.vlm.tokenizer
        ids = [tok.convert_tokens_to_ids(t) for t in SCORE_TOKENS]
        if any(i is None or i == tok.unk_token_id for i in ids):
            raise ValueError("reward model: the tokenizer has no single tokens for the digits 0-5")
        self.digit_ids = ids

    def query(self, cond: Condition, dimension: str) -> str:
        t = self.scorer.template
        clause = ""
        if dimension == "text_alignment":
            clause = t.prompt_clause.format(prompt=cond.effective_prompt)
        return SCORE_QUERY.format(
            task_name=t.task_names[cond.task],
            definition=t.definitions[dimension],
            prompt_clause=clause,
            dimension_name=t.dimension_names[dimension],
        )

    @torch.no_grad()
    def score(self, images: torch.Tensor, conds: Sequence[Condition]) -> tuple[torch.Tensor, Comparisons]:
        """Normalised expected score in [0, 1] for every (condition, dimension)."""
        comps = Comparisons.of(conds)
        scorer = self.scorer
        out = []
        results = [
            a
            for a in (images.detach().clamp(0, 1) * 255)
            .round()
            .to(torch.uint8)
            .permute(0, 2, 3, 1)
            .cpu()
            .numpy()
        ]
        for start in range(0, len(comps.index), self.batch_size):
            sl = range(start, min(start + self.batch_size, len(comps.index)))
            ordered = []
            texts = []
            for j in sl:
                cond = conds[comps.index[j]]
                pair = [cond.source, results[comps.index[j]]]
                ordered.extend(pair)
                tokens = [scorer.spec.tokens_per_image(*im.shape[:2]) for im in pair]
                texts.append(scorer.chat_text(self.query(cond, comps.dimensions[j]), tokens))
            proc = scorer.vlm.processor.image_processor(images=ordered, return_tensors="pt")
            enc = scorer.vlm.tokenizer(
                texts, padding=True, padding_side="left", return_tensors="pt", add_special_tokens=False
            )
            device = scorer.device
            input_ids = enc["input_ids"].to(device)
            logits = (
                scorer.model(
                    input_ids=input_ids,
                    attention_mask=enc["attention_mask"].to(device),
                    mm_token_type_ids=(input_ids == scorer.model.config.image_token_id).to(torch.int32),
                    pixel_values=proc["pixel_values"].to(device=device, dtype=scorer.model.dtype),
                    image_grid_thw=proc["image_grid_thw"].to(device),
                    logits_to_keep=1,
                    use_cache=False,
                )
                .logits[:, -1, :]
                .float()
            )
            probs = torch.softmax(logits[:, self.digit_ids], dim=-1)
            weights = torch.arange(len(SCORE_TOKENS), dtype=probs.dtype, device=probs.device)
            out.append((probs * weights).sum(-1) / (len(SCORE_TOKENS) - 1))
        return torch.cat(out).to(images.device), comps


class OracleReward:
    """Normalised oracle score of each result per dimension of its condition's task (no grad).

    The anchors of an item (its noise floor and target score) are computed once and kept."""

    def __init__(self) -> None:
        self._anchors: dict[str, object] = {}

    @staticmethod
    def check(conds: Sequence[Condition], what: str = "nft_reward") -> None:
        """InputError unless every condition carries its synthetic-world target."""
        from onereward.errors import InputError

        missing = [c.item_id for c in conds if c.target is None]
        if missing:
            raise InputError(
                f"{what}: 'oracle' needs the synthetic world's target of every training item; "
                f"{len(missing)} have none (first: {missing[0]!r}); use 'pairwise' or 'score' on other data"
            )

    def score(self, images: torch.Tensor, conds: Sequence[Condition]) -> tuple[torch.Tensor, Comparisons]:
        """Normalised oracle score for every (condition, dimension): images [B, 3, H, W] in [0, 1]."""
        from onereward.synth import baselines, oracle

        comps = Comparisons.of(conds)
        arrays = (images.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        out: list[float] = []
        for i, c in enumerate(conds):
            if c.item_id not in self._anchors:
                self.check([c])
                self._anchors[c.item_id] = baselines.anchors(
                    c.task, c.source, c.mask, c.prompt, c.target, item_id=c.item_id
                )
            norm = self._anchors[c.item_id].normalise(
                oracle.score_all(c.task, c.source, c.mask, c.prompt, arrays[i])
            )
            out.extend(float(norm[d]) for d in c.dimensions)
        return torch.tensor(out, dtype=torch.float32, device=images.device), comps
