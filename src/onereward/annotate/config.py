"""Settings of the three annotation stages (one declaration each; see :mod:`onereward.config`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from onereward.config import Config, setting

PREDICTION_SOURCES: tuple[str, ...] = ("none", "oracle", "reward_model")
IMAGE_URL_SCHEMES: tuple[str, ...] = ("s3://", "gs://", "http://", "https://")


@dataclass(frozen=True)
class ExportConfig(Config):
    """export_annotations: where the Label Studio projects live, how task images are served, and the
    pre-annotations. The API token is never a setting: it is read from LABEL_STUDIO_API_KEY."""

    section: ClassVar[str] = "export"

    label_studio_url: str = setting(
        "", "Label Studio URL, e.g. http://127.0.0.1:8080 (required unless offline)."
    )
    offline: bool = setting(
        False, "No server: write the tasks to tasks.json for simulated annotators (the embedded demo)."
    )
    document_root: str = setting(
        "",
        "Label Studio's local-files document root, shared with the server ('' = $LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT).",
    )
    image_url_prefix: str = setting(
        "",
        "Serve task images from cloud storage instead: s3://bucket/prefix (uploaded by export) or gs://, http(s)://.",
    )
    s3_endpoint: str = setting("", "S3 endpoint URL for MinIO or other S3-compatible stores ('' = AWS).")
    project_title: str = setting("onereward", "Project title; title and version identify the projects.")
    project_version: str = setting(
        "v1", "Project version; the same title and version reuse the same projects."
    )
    chunk_size: int = setting(500, "Tasks per import request.")
    predictions: Literal["none", "oracle", "reward_model"] = setting(
        "none", "Pre-annotations shown to annotators: none, oracle (synthetic world) or reward_model."
    )
    reward_model: str = setting("", "A reward_model artifact or VLM folder, for predictions reward_model.")
    overlap: int = setting(1, "Annotators per task (maximum_annotations of new projects).")
    max_retries: int = setting(4, "Retries with exponential backoff when the server is unreachable.")
    retry_backoff: float = setting(0.5, "Seconds before the first retry; doubled each time, at most 10 s.")
    timeout: float = setting(120.0, "Seconds to wait for each Label Studio answer before retrying.")

    def validate(self) -> None:
        # No run may create no tasks silently: a missing URL is an error unless offline is explicit.
        self.require(
            bool(self.label_studio_url) or self.offline,
            "label_studio_url",
            "expected the Label Studio URL, or offline true to write tasks.json only",
        )
        self.require(
            not (self.offline and self.label_studio_url),
            "offline",
            f"offline and a label_studio_url ({self.label_studio_url}) exclude each other",
        )
        self.require(
            not self.image_url_prefix or self.image_url_prefix.startswith(IMAGE_URL_SCHEMES),
            "image_url_prefix",
            "expected s3://, gs:// or http(s)://",
        )
        self.require(
            self.predictions != "reward_model" or bool(self.reward_model),
            "reward_model",
            "required with --predictions reward_model (a reward_model artifact or VLM folder)",
        )
        self.require(self.chunk_size >= 1, "chunk_size", "expected an integer >= 1")
        self.require(self.overlap >= 1, "overlap", "expected an integer >= 1")
        self.require(self.max_retries >= 0, "max_retries", "expected an integer >= 0")
        self.require(self.retry_backoff >= 0, "retry_backoff", "expected a number of seconds >= 0")
        self.require(self.timeout > 0, "timeout", "expected a number of seconds > 0")
        self.require(bool(self.project_title.strip()), "project_title", "must not be empty")
        self.require(bool(self.project_version.strip()), "project_version", "must not be empty")


@dataclass(frozen=True)
class SimulateConfig(Config):
    """simulate_annotations: oracle-driven annotators (oracle score + Gaussian noise per candidate)."""

    section: ClassVar[str] = "simulate"

    noise: float = setting(
        0.0, "Standard deviation of Gaussian noise added to each oracle score (0 = the oracle)."
    )
    threshold: float = setting(
        0.02, "'No clear difference' when a dimension's noisy score spread is below this."
    )
    annotators: int = setting(1, "Simulated annotators per task (each a Label Studio user online).")
    seed: int = setting(0, "Seed of the noise; answers depend only on (seed, annotator, item).")
    max_retries: int = setting(4, "Retries with exponential backoff when the server is unreachable.")
    retry_backoff: float = setting(0.5, "Seconds before the first retry; doubled each time, at most 10 s.")
    timeout: float = setting(120.0, "Seconds to wait for each Label Studio answer before retrying.")

    def validate(self) -> None:
        self.require(self.noise >= 0, "noise", "expected a number >= 0")
        self.require(self.threshold >= 0, "threshold", "expected a number >= 0")
        self.require(self.annotators >= 1, "annotators", "expected an integer >= 1")
        self.require(self.max_retries >= 0, "max_retries", "expected an integer >= 0")
        self.require(self.retry_backoff >= 0, "retry_backoff", "expected a number of seconds >= 0")
        self.require(self.timeout > 0, "timeout", "expected a number of seconds > 0")


@dataclass(frozen=True)
class ImportConfig(Config):
    """import_annotations: reading the answers back."""

    section: ClassVar[str] = "import"

    max_retries: int = setting(4, "Retries with exponential backoff when the server is unreachable.")
    retry_backoff: float = setting(0.5, "Seconds before the first retry; doubled each time, at most 10 s.")
    timeout: float = setting(120.0, "Seconds to wait for each Label Studio answer before retrying.")

    def validate(self) -> None:
        self.require(self.max_retries >= 0, "max_retries", "expected an integer >= 0")
        self.require(self.retry_backoff >= 0, "retry_backoff", "expected a number of seconds >= 0")
        self.require(self.timeout > 0, "timeout", "expected a number of seconds > 0")
