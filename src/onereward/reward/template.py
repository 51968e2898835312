"""The reward model's query template Phi(task, dimension, prompt) (paper Eq. 1, Figure 5).

The paper's exact wording is not public; this is ours. It is versioned: a trained reward model
stores the version and the template text in ``query_template.json`` and scoring renders queries
from that stored copy, so a later change of the wording here never silently changes the queries
an already trained model sees. The user prompt enters the query only for ``text_alignment``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from onereward import tasks
from onereward.artifacts import write_json_atomic
from onereward.errors import InputError

TEMPLATE_FILE = "query_template.json"
TEMPLATE_VERSION = "phi-v1"

# Human-readable task names used inside the query.
TASK_NAMES: dict[str, str] = {
    tasks.IMAGE_FILL: "image fill",
    tasks.IMAGE_EXTEND: "image extend",
    tasks.OBJECT_REMOVAL: "object removal",
}
DIMENSION_NAMES: dict[str, str] = {
    tasks.TEXT_ALIGNMENT: "text alignment",
    tasks.CONSISTENCY: "consistency",
    tasks.STRUCTURE: "structure",
    tasks.AESTHETICS: "aesthetics",
    tasks.REMOVAL_QUALITY: "removal quality",
}

_QUERY = (
    "Task: {task_name}. Dimension: {dimension_name}. {definition}{prompt_clause} "
    "{context_clause}Is the first image better than the second image in {dimension_name}? Answer Yes or No."
)
_PROMPT_CLAUSE = ' Prompt: "{prompt}".'
_CONTEXT_CLAUSE = (
    "The first two images are the source and the mask of the edit; compare the two results that follow. "
)


@dataclass(frozen=True)
class QueryTemplate:
    """A versioned query template: the texts and vocabularies that render Phi(task, dimension, prompt)."""

    version: str = TEMPLATE_VERSION
    query: str = _QUERY
    prompt_clause: str = _PROMPT_CLAUSE
    context_clause: str = _CONTEXT_CLAUSE
    task_names: dict[str, str] = field(default_factory=lambda: dict(TASK_NAMES))
    dimension_names: dict[str, str] = field(default_factory=lambda: dict(DIMENSION_NAMES))
    definitions: dict[str, str] = field(default_factory=lambda: dict(tasks.DIMENSION_DEFINITIONS))
    context_images: bool = False  # source and mask shown before the two results (off in the paper)

    def render(self, task: str, dimension: str, prompt: str | None) -> str:
        """Phi(task, dimension, prompt): the query text for one comparison.

        Raises :class:`InputError` for an unknown task, a dimension that the task does not have, or
        a text_alignment query without a prompt.
        """
        if task not in self.task_names:
            raise InputError(f"task: unknown task {task!r}; the template knows {sorted(self.task_names)}")
        if dimension not in self.dimension_names:
            raise InputError(
                f"dimension: unknown dimension {dimension!r}; expected one of {sorted(self.dimension_names)}"
            )
        allowed = tasks.dimensions_for(task, prompt)
        if dimension not in allowed:
            raise InputError(
                f"dimension: {dimension!r} is not evaluated for task {task!r} (prompt {prompt!r}); expected one of {allowed}"
            )
        prompt_clause = ""
        if dimension == tasks.TEXT_ALIGNMENT:
            prompt_clause = self.prompt_clause.format(prompt=tasks.effective_prompt(task, prompt))
        return self.query.format(
            task_name=self.task_names[task],
            dimension_name=self.dimension_names[dimension],
            definition=self.definitions[dimension],
            prompt_clause=prompt_clause,
            context_clause=self.context_clause if self.context_images else "",
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``query_template.json`` into ``directory`` (atomically)."""
        path = Path(directory) / TEMPLATE_FILE
        write_json_atomic(path, self.to_json())
        return path


def default_template(*, context_images: bool = False) -> QueryTemplate:
    """The current template version (what a newly trained reward model stores)."""
    return QueryTemplate(context_images=context_images)


def load_template(directory: str | os.PathLike[str]) -> QueryTemplate:
    """Read ``query_template.json`` of a reward model; a folder without one gets the default.

    Raises :class:`InputError` when the file is malformed (names the file and the field).
    """
    path = Path(directory) / TEMPLATE_FILE
    if not path.is_file():
        return default_template()
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object")
    known = set(QueryTemplate.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise InputError(
            f"{path}: field {unknown[0]!r} is unknown (template version {data.get('version')!r})"
        )
    for key in ("version", "query"):
        if not isinstance(data.get(key), str):
            raise InputError(f"{path}: field {key!r} must be a string")
    return QueryTemplate(**data)
