"""Tasks and evaluation dimensions (the paper's section 4.2 and DESIGN.md's table).

This module is the one place that says which dimensions belong to which task, what the fixed
prompts are, and how each dimension is defined for annotators and for the reward model's query.
"""

from __future__ import annotations

IMAGE_FILL = "image_fill"
IMAGE_EXTEND = "image_extend"
OBJECT_REMOVAL = "object_removal"

TASKS: tuple[str, ...] = (IMAGE_FILL, IMAGE_EXTEND, OBJECT_REMOVAL)

TEXT_ALIGNMENT = "text_alignment"
CONSISTENCY = "consistency"
STRUCTURE = "structure"
AESTHETICS = "aesthetics"
REMOVAL_QUALITY = "removal_quality"

DIMENSIONS: tuple[str, ...] = (TEXT_ALIGNMENT, CONSISTENCY, STRUCTURE, AESTHETICS, REMOVAL_QUALITY)

# One-line definitions, paraphrased from the paper's annotation protocol (section 4.2).
DIMENSION_DEFINITIONS: dict[str, str] = {
    STRUCTURE: "Spatial and geometric coherence with the original layout: contours, perspective, scene topology.",
    CONSISTENCY: "How seamlessly the edited region blends with its surroundings in colour, texture and lighting.",
    TEXT_ALIGNMENT: "How accurately the generated content matches the prompt: object identity, attributes, position.",
    AESTHETICS: "Overall visual appeal: composition, realism and fidelity to high-quality image standards.",
    REMOVAL_QUALITY: "Whether the target object is completely removed and the area cleanly filled without artifacts.",
}

# Fixed prompts for tasks without a user prompt (the paper uses a generic one for removal).
REMOVAL_PROMPT = "remove the specified object"
EXTEND_GENERIC_PROMPT = "extend the image naturally"
# Longest user prompt a stage accepts (characters): far beyond any text encoder's window (T5 512
# tokens), so a longer one is a broken row (e.g. a whole document pasted in), not a prompt.
MAX_PROMPT_CHARS = 2000

# Default task sampling probabilities in RL (paper section 5.1).
DEFAULT_TASK_PROBABILITIES: dict[str, float] = {IMAGE_FILL: 0.5, IMAGE_EXTEND: 0.25, OBJECT_REMOVAL: 0.25}


class UnknownTaskError(ValueError):
    """Raised for a task id or dimension that is not in the table above."""


def check_task(task: str, *, where: str = "task") -> str:
    """Return ``task`` if it is known, else raise an error naming ``where`` and the known tasks."""
    if task not in TASKS:
        raise UnknownTaskError(f"{where}: unknown task {task!r}; expected one of {', '.join(TASKS)}")
    return task


def has_user_prompt(task: str, prompt: str | None) -> bool:
    """True when the item carries a user prompt (fill always, extend optionally, removal never)."""
    check_task(task)
    if task == OBJECT_REMOVAL:
        return False
    return bool(prompt and prompt.strip())


def dimensions_for(task: str, prompt: str | None = None) -> tuple[str, ...]:
    """Evaluation dimensions of a task; image_extend without prompt drops text_alignment."""
    check_task(task)
    if task == OBJECT_REMOVAL:
        return (REMOVAL_QUALITY,)
    if task == IMAGE_EXTEND and not has_user_prompt(task, prompt):
        return (CONSISTENCY, STRUCTURE, AESTHETICS)
    return (TEXT_ALIGNMENT, CONSISTENCY, STRUCTURE, AESTHETICS)


def effective_prompt(task: str, prompt: str | None) -> str:
    """Prompt fed to the generator: the user prompt, or the task's fixed prompt."""
    check_task(task)
    if task == OBJECT_REMOVAL:
        return REMOVAL_PROMPT
    if has_user_prompt(task, prompt):
        return prompt.strip()  # type: ignore[union-attr]
    if task == IMAGE_EXTEND:
        return EXTEND_GENERIC_PROMPT
    raise UnknownTaskError(f"prompt: task {task!r} needs a non-empty prompt")


def task_dimension_pairs() -> list[tuple[str, str]]:
    """All (task, dimension) pairs that can carry preferences (the paper's Table 1 cells)."""
    pairs: list[tuple[str, str]] = []
    for task in TASKS:
        for dim in dimensions_for(task, prompt="x" if task != OBJECT_REMOVAL else None):
            pairs.append((task, dim))
    return pairs
