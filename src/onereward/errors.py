"""Errors that mean "bad input" (reported as one line, exit code 2) rather than a bug."""

from __future__ import annotations

from onereward.artifacts import ArtifactError
from onereward.tasks import UnknownTaskError


class InputError(ValueError):
    """Bad user input: the message names the input, the field and what was expected."""


class ProfileError(ValueError):
    """A profile file is invalid; the message names the file and the key."""


USER_ERRORS: tuple[type[BaseException], ...] = (
    InputError,
    ArtifactError,
    ProfileError,
    UnknownTaskError,
    FileNotFoundError,
)
