"""Helpers of the reliability suite: the session's ledger, the in-process CLI runner that counts
tracebacks, directory fingerprints that detect lost or changed outputs, forged artifacts and the
bad-input corpus (generated here; nothing binary is committed).

Every case goes through :func:`refused` or :func:`run_ok`, which record in :data:`LEDGER` what was
tried and what went wrong; ``conftest.py`` prints the ledger at the end of the run and fails the
session when a traceback or lost data was seen.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import struct
import traceback
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from onereward.artifacts import MANIFEST_NAME, content_hash

# Sentinel secrets: set in the environment of the stages' runs, then searched for in everything
# they wrote (artifacts, manifests, logs, compiled specs). None may ever appear.
SECRETS: dict[str, str] = {
    "LABEL_STUDIO_API_KEY": "rel16-ls-token-6f1d2c9a8b7e4f30a1b2c3d4e5f60718",
    "AWS_ACCESS_KEY_ID": "REL16AKIASENTINEL7Q2W",
    "AWS_SECRET_ACCESS_KEY": "rel16-s3-secret-0b9a8c7d6e5f4a3b2c1d0e9f8a7b6c5d",
    "HF_TOKEN": "hf_rel16SentinelTokenQwErTyUiOpAsDfGhJkLzXcVbNm",
}
TRACEBACK_MARK = "Traceback (most recent call last)"


@dataclass
class Ledger:
    """What the suite tried and what went wrong (printed by conftest.pytest_terminal_summary)."""

    bad_inputs: Counter = field(default_factory=Counter)  # category -> cases
    faults: Counter = field(default_factory=Counter)  # kind -> faults injected
    tracebacks: list[str] = field(default_factory=list)  # case: first lines of the traceback
    lost: list[str] = field(default_factory=list)  # case: what was lost or changed
    secrets_checked: int = 0  # files and log texts searched for the sentinel secrets
    killed: Counter = field(default_factory=Counter)  # processes killed (SIGKILL) by what
    known: list[str] = field(default_factory=list)  # cases failing on a reported defect (xfail)
    expecting: str = ""  # the reported defect the running case is expected to hit
    used: bool = False

    @contextlib.contextmanager
    def known_defect(self, defect: str) -> Iterator[None]:
        """A case expected to fail on a defect reported to the owners of code outside this suite's
        remit: what it sees is listed under known defects (the test is a strict xfail)."""
        self.expecting = defect
        try:
            yield
        finally:
            self.expecting = ""

    def bad_input(self, category: str) -> None:
        self.used = True
        self.bad_inputs[category] += 1

    def fault(self, kind: str, n: int = 1) -> None:
        self.used = True
        self.faults[kind] += n

    def traceback(self, case: str, text: str) -> None:
        self.used = True
        line = f"{case}: {text.strip().splitlines()[-1][:300] if text.strip() else '?'}"
        (self.known if self.expecting else self.tracebacks).append(line)

    def lose(self, case: str, what: str) -> None:
        self.used = True
        (self.known if self.expecting else self.lost).append(f"{case}: {what}")


LEDGER = Ledger()


# ---- running the CLI ---------------------------------------------------------------------------


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str  # includes the log lines (onereward's handler writes to the current sys.stderr)
    traceback: str = ""  # an exception that escaped main(), or a traceback printed on stderr

    @property
    def error_line(self) -> str:
        """The CLI's one-line error (``onereward <cmd>: error: ...``), or the last stderr line."""
        lines = [ln for ln in self.stderr.splitlines() if ": error: " in ln]
        if lines:
            return lines[-1]
        rest = [ln for ln in self.stderr.splitlines() if ln.strip()]
        return rest[-1] if rest else ""


@contextlib.contextmanager
def environ(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of the block (restored afterwards)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_cli(argv: Sequence[str], *, env: dict[str, str] | None = None) -> CliResult:
    """``onereward.cli.main(argv)`` in this process with the sentinel secrets in the environment.

    An exception that escapes ``main`` is what a user would see as a traceback: it is caught and
    returned (and the caller counts it), never raised into the test.
    """
    from onereward.cli import main

    out, err = io.StringIO(), io.StringIO()
    tb = ""
    code = 0
    with (
        environ({**SECRETS, **(env or {})}),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        try:
            code = int(main([str(a) for a in argv]) or 0)
        except SystemExit as e:  # argparse errors: usage + one line, exit 2
            code = e.code if isinstance(e.code, int) else 1
        except BaseException:  # noqa: BLE001 - anything else reaches the user as a traceback
            tb = traceback.format_exc()
            code = 1
    stderr = err.getvalue()
    if not tb and TRACEBACK_MARK in stderr:
        tb = stderr[stderr.index(TRACEBACK_MARK) :]
    LOG_TEXTS.append(out.getvalue() + stderr + tb)
    return CliResult(code, out.getvalue(), stderr, tb)


LOG_TEXTS: list[str] = []  # every run's console output, searched for the sentinel secrets
WRITTEN: list[Path] = []  # every folder the suite's tests wrote, searched for the sentinel secrets


def find_secrets(values: Sequence[str], roots: Sequence[Path], texts: Sequence[str] = ()) -> list[str]:
    """Where any of ``values`` appears: files under ``roots`` (artifacts, manifests, logs, caches)
    and console texts. Counted in the ledger; every hit is a leak."""
    needles = [v.encode() for v in values if v]
    hits: list[str] = []
    seen: set[Path] = set()
    for root in roots:
        for p in [root] if Path(root).is_file() else Path(root).rglob("*"):
            if not p.is_file() or p.is_symlink() or p in seen:
                continue
            seen.add(p)
            LEDGER.secrets_checked += 1
            data = p.read_bytes()
            hits += [f"{p}" for n in needles if n in data]
    for i, text in enumerate(texts):
        LEDGER.secrets_checked += 1
        hits += [f"console/log text {i}" for v in values if v and v in text]
    for h in hits:
        LEDGER.lose("secrets", f"a secret appears in {h}")
    return hits


# ---- fingerprints of directories -----------------------------------------------------------------


def tree_hash(path: Path) -> str:
    """sha256 over the relative paths and bytes of every file under ``path`` ("absent" when none)."""
    path = Path(path)
    if not path.exists():
        return "absent"
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(path)).encode() + b"\0")
            h.update(p.read_bytes())
    return h.hexdigest()


def siblings(path: Path) -> set[str]:
    """Names beside ``path`` (staging folders of a failed write would show up here)."""
    parent = Path(path).parent
    return {p.name for p in parent.iterdir()} if parent.is_dir() else set()


def refused(
    case: str,
    category: str | None,
    argv: Sequence[str],
    *,
    names: Sequence[str],
    out: Path | None,
    protect: Sequence[Path] = (),
    env: dict[str, str] | None = None,
) -> CliResult:
    """Run a case that must be refused: no traceback, exit code non-zero, one error line naming
    ``names`` (input and field), ``out`` (an earlier artifact or absent) and ``protect`` unchanged,
    and no staging folder left beside ``out``. ``category``: the bad input's (None for a fault)."""
    guarded = [p for p in [out, *protect] if p is not None]
    before = {p: tree_hash(p) for p in guarded}
    near = siblings(out) if out is not None else set()
    if category:
        LEDGER.bad_input(category)
    res = run_cli(argv, env=env)
    lost = _account(case, res, before, near, out)
    assert not lost, f"{case}: {lost}"
    assert not res.traceback, f"{case}: traceback\n{res.traceback[-3000:]}"
    assert res.code != 0, f"{case}: exit code 0 for a bad input; stderr:\n{res.stderr[-2000:]}"
    line = res.error_line
    assert res.code == 2 and ": error: " in line, (
        f"{case}: expected a one-line error, got code {res.code}: {line!r}"
    )
    missing = [n for n in names if n not in line]
    assert not missing, f"{case}: the error does not name {missing}: {line!r}"
    return res


def run_ok(
    case: str,
    argv: Sequence[str],
    *,
    out: Path | None = None,
    protect: Sequence[Path] = (),
    env: dict[str, str] | None = None,
) -> CliResult:
    """Run a case that must succeed (bad items skipped and reported): exit 0, no traceback, the
    protected directories unchanged."""
    before = {p: tree_hash(p) for p in protect}
    res = run_cli(argv, env=env)
    lost = _account(case, res, before, set(), None)
    assert not lost, f"{case}: {lost}"
    assert not res.traceback, f"{case}: traceback\n{res.traceback[-3000:]}"
    assert res.code == 0, f"{case}: exit code {res.code}: {res.error_line!r}\n{res.stderr[-2000:]}"
    return res


def _account(
    case: str, res: CliResult, before: dict[Path, str], near: set[str], out: Path | None
) -> list[str]:
    """Record a traceback and anything lost or changed; returns this case's losses."""
    if res.traceback:
        LEDGER.traceback(case, res.traceback)
    lost = [f"{p} changed or removed" for p, h in before.items() if tree_hash(p) != h]
    if out is not None:
        left = {
            n for n in siblings(out) - near if n.startswith(f".{out.name}.") and n.endswith((".tmp", ".old"))
        }
        if left:
            lost.append(f"staging left beside {out}: {sorted(left)}")
    for what in lost:
        LEDGER.lose(case, what)
    return lost


# ---- forged artifacts ----------------------------------------------------------------------------


def copy_artifact(src: Path, dst: Path) -> Path:
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst, symlinks=True)
    return dst


def rehash(root: Path) -> Path:
    """Recompute ``manifest.json``'s content hash after editing files: a forged artifact that passes
    the hash check, so that the stage's own validation of the content is what is tested."""
    mpath = Path(root) / MANIFEST_NAME
    data = json.loads(mpath.read_text())
    data["content_hash"] = content_hash(root)
    mpath.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return root


def edit_manifest(root: Path, **fields: object) -> Path:
    mpath = Path(root) / MANIFEST_NAME
    data = json.loads(mpath.read_text())
    data.update(fields)
    mpath.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return root


# ---- the image corpus ----------------------------------------------------------------------------


def texture(seed: int, size: int = 64) -> np.ndarray:
    """A distinct RGB image per seed (gradients + blocks), so no two corpus images are near-duplicates."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = np.stack(
        [np.sin(2 * np.pi * (xx * rng.uniform(0.5, 3) + yy * rng.uniform(0, 2) + c)) for c in range(3)], -1
    )
    blocks = rng.uniform(-1, 1, (8, 8, 3)).repeat(size // 8, 0).repeat(size // 8, 1)
    return ((base * 0.5 + blocks * 0.5 + 1) * 127.5).clip(0, 255).astype(np.uint8)


def encode(im: Image.Image | np.ndarray, fmt: str = "PNG", **kw: object) -> bytes:
    if isinstance(im, np.ndarray):
        im = Image.fromarray(im)
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def bomb_png(width: int = 20000, height: int = 20000) -> bytes:
    """A small PNG declaring ``width`` x ``height`` RGB pixels (only its first rows are stored)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\0" * (1 + 3 * width) * 2)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


@dataclass(frozen=True)
class ImageCase:
    """One corpus file: its bytes, and either the reason select must give (bad) or the RGB
    conversion it must record (valid)."""

    name: str
    data: Callable[[], bytes]
    reason: str = ""  # bad: the start of the bad_items reason
    conversion: str = ""  # valid: the start of meta.select.image_conversion


def image_cases() -> list[ImageCase]:
    """The issue's image list: truncated/corrupt PNG and JPEG, zero bytes, 1x1, a decompression
    bomb (bad); CMYK, 16-bit, palette and alpha (valid, converted)."""
    png, jpg = encode(texture(101)), encode(texture(102), "JPEG", quality=90)
    alpha = np.dstack([texture(107), np.linspace(0, 255, 64 * 64).reshape(64, 64).astype(np.uint8)])
    return [
        ImageCase("png_truncated", lambda: png[: len(png) // 2], reason="image: truncated"),
        ImageCase(
            "png_corrupt", lambda: png[:16] + bytes(range(256)) * 8, reason="image: corrupt or not an image"
        ),
        ImageCase("jpeg_truncated", lambda: jpg[: len(jpg) // 2], reason="image: truncated"),
        ImageCase(
            "jpeg_corrupt",
            lambda: jpg[:2] + b"\xff\xc0" + bytes(300),
            reason="image: corrupt or not an image",
        ),
        ImageCase("zero_bytes", lambda: b"", reason="image: empty file (0 bytes)"),
        ImageCase(
            "one_pixel",
            lambda: encode(texture(103)[:1, :1]),
            reason="image: 1x1 is smaller than the minimum side",
        ),
        ImageCase("bomb_20000", bomb_png, reason="image: too large to decode safely"),
        ImageCase(
            "cmyk",
            lambda: encode(Image.fromarray(texture(104)).convert("CMYK"), "JPEG", quality=95),
            conversion="CMYK -> RGB",
        ),
        ImageCase(
            "deep16",
            lambda: encode(texture(105)[..., 0].astype(np.uint16) * 257),
            conversion="I;16 16-bit grey",
        ),
        ImageCase(
            "palette", lambda: encode(Image.fromarray(texture(106)).convert("P")), conversion="P palette"
        ),
        ImageCase("alpha", lambda: encode(alpha), conversion="RGBA with alpha -> RGB over 255,255,255"),
    ]
