"""The Label Studio labeling config, generated from the task/dimension table in ``tasks.py``.

The paper's protocol (section 4.2, Figure 4): annotators see the prompt, the source with the mask
and N candidates, and for each evaluation dimension pick the best and the worst candidate, or say
that the differences are negligible. One config per *dimension set* (tasks with the same
dimensions share a project): fill and prompted extend (4 dimensions), unprompted extend
(3 dimensions), object removal (1 dimension), so that every radio group is required and relevant.

Per dimension the config has two single-choice radio groups, ``<dimension>_best`` and
``<dimension>_worst``, with the candidate letters ``A, B, C, ...`` plus "No clear difference"
(stored as the alias ``none``).
"""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from onereward import tasks

NO_DIFFERENCE = "none"  # alias stored in results for "No clear difference"
NO_DIFFERENCE_LABEL = "No clear difference"
OVERLAY_KEY = "source_overlay"  # task data key of the source image with the mask drawn over it
PROMPT_KEY = "prompt"

# Dimension sets, named for project titles; each (task, prompt?) maps to exactly one.
DIMENSION_SETS: dict[str, tuple[str, ...]] = {
    "prompted": tasks.dimensions_for(tasks.IMAGE_FILL, "x"),
    "unprompted_extend": tasks.dimensions_for(tasks.IMAGE_EXTEND, None),
    "removal": tasks.dimensions_for(tasks.OBJECT_REMOVAL, None),
}


def dimension_set_name(task: str, prompt: str | None) -> str:
    """Name of the dimension set (and so of the project) an item belongs to."""
    dims = tasks.dimensions_for(task, prompt)
    for name, dset in DIMENSION_SETS.items():
        if dset == dims:
            return name
    raise AssertionError(f"no dimension set for {task!r} with dimensions {dims}")  # table changed


def candidate_letters(n: int) -> list[str]:
    """Letters shown for ``n`` candidates: A, B, C, ... (at most 26)."""
    if not 1 <= n <= 26:
        raise ValueError(f"number of candidates must be between 1 and 26, got {n}")
    return list(string.ascii_uppercase[:n])


def candidate_key(letter: str) -> str:
    """Task data key (and Image tag name) of candidate ``letter``."""
    return f"candidate_{letter}"


def choice_names(dimension: str) -> tuple[str, str]:
    """``(best, worst)`` control names of a dimension."""
    return f"{dimension}_best", f"{dimension}_worst"


@dataclass(frozen=True)
class LabelingConfig:
    """A generated config and what a valid result may contain."""

    name: str  # dimension set name
    dimensions: tuple[str, ...]
    n_candidates: int
    xml: str

    @property
    def sha(self) -> str:
        return hashlib.sha256(self.xml.encode()).hexdigest()

    @property
    def letters(self) -> list[str]:
        return candidate_letters(self.n_candidates)

    def allowed_values(self) -> set[str]:
        """Values a ``*_best`` / ``*_worst`` result may hold."""
        return set(self.letters) | {NO_DIFFERENCE}

    def control_names(self) -> dict[str, tuple[str, str]]:
        """``{from_name: (dimension, "best" | "worst")}`` for every control of the config."""
        out: dict[str, tuple[str, str]] = {}
        for dim in self.dimensions:
            best, worst = choice_names(dim)
            out[best] = (dim, "best")
            out[worst] = (dim, "worst")
        return out


def _title(dimension: str) -> str:
    return dimension.replace("_", " ").capitalize()


def build_labeling_config(name: str, n_candidates: int) -> LabelingConfig:
    """Build the XML config of dimension set ``name`` for ``n_candidates`` candidates per task."""
    if name not in DIMENSION_SETS:
        raise ValueError(f"dimension set: unknown {name!r}; expected one of {sorted(DIMENSION_SETS)}")
    dims = DIMENSION_SETS[name]
    letters = candidate_letters(n_candidates)
    cols = min(n_candidates, 4)
    lines = [
        "<View>",
        # No region tools are used: hide the per-image tool panels that would cover the candidates.
        "  <Style>.lsf-toolbar { display: none; }</Style>",
        '  <Header value="Prompt" size="5"/>',
        f'  <Text name="{PROMPT_KEY}_text" value="${PROMPT_KEY}"/>',
        '  <View style="display: flex; gap: 16px; align-items: flex-start; flex-wrap: wrap">',
        '    <View style="flex: 0 0 auto">',
        '      <Header value="Source (edit region in red)" size="6"/>',
        f'      <Image name="{OVERLAY_KEY}" value="${OVERLAY_KEY}" width="176px" zoom="false"/>',
        "    </View>",
        f'    <View style="display: grid; grid-template-columns: repeat({cols}, 176px); gap: 12px">',
    ]
    for letter in letters:
        key = candidate_key(letter)
        lines += [
            "      <View>",
            f'        <Header value="{letter}" size="6"/>',
            f'        <Image name="{key}" value="${key}" width="176px" zoom="false"/>',
            "      </View>",
        ]
    lines += ["    </View>", "  </View>"]
    for dim in dims:
        best, worst = choice_names(dim)
        definition = tasks.DIMENSION_DEFINITIONS[dim]
        lines += [
            '  <View style="margin-top: 10px; padding: 6px 10px; background: #f6f6f6; border-radius: 4px">',
            f'    <Header value={quoteattr(_title(dim) + ": " + definition)} size="5"/>',
        ]
        for control, label in ((best, "Best"), (worst, "Worst")):
            lines.append(
                f'    <Choices name="{control}" toName="{OVERLAY_KEY}" choice="single-radio" required="true" '
                f'showInline="true" requiredMessage={quoteattr(f"{_title(dim)}: choose the {label.lower()} candidate")}>'
            )
            lines.append(f'      <Header value="{label}:" size="6"/>')
            for letter in letters:
                lines.append(f'      <Choice value="{letter}"/>')
            lines.append(f'      <Choice value="{escape(NO_DIFFERENCE_LABEL)}" alias="{NO_DIFFERENCE}"/>')
            lines.append("    </Choices>")
        lines.append("  </View>")
    lines.append("</View>")
    return LabelingConfig(name=name, dimensions=dims, n_candidates=n_candidates, xml="\n".join(lines) + "\n")


def choice_result(dimension: str, which: str, value: str) -> dict:
    """One result entry (Label Studio JSON) choosing ``value`` for ``<dimension>_<which>``."""
    best, worst = choice_names(dimension)
    return {
        "from_name": best if which == "best" else worst,
        "to_name": OVERLAY_KEY,
        "type": "choices",
        "value": {"choices": [value]},
    }
