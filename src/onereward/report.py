"""HTML / Markdown reports that stages write into their artifacts (and KFP shows as HTML/Markdown).

Images are embedded as small base64 PNG thumbnails so that one self-contained ``report.html``
renders in the KFP UI; plots are matplotlib figures rendered to PNG the same way.
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from onereward.artifacts import write_json_atomic  # noqa: F401  (re-export for stages)


def png_data_uri(image: np.ndarray | Image.Image | str | os.PathLike[str], max_side: int = 160) -> str:
    """Thumbnail of an image (array, PIL image or file path) as a ``data:image/png;base64,...`` URI."""
    if isinstance(image, (str, os.PathLike)):
        im = Image.open(image).convert("RGB")
    elif isinstance(image, Image.Image):
        im = image.convert("RGB")
    else:
        arr = np.asarray(image)
        if arr.dtype == bool:
            arr = arr.astype(np.uint8) * 255
        im = Image.fromarray(arr.astype(np.uint8))
    if max(im.size) > max_side:
        im.thumbnail((max_side, max_side))
    elif max(im.size) < max_side:
        scale = max_side // max(im.size)
        if scale > 1:
            im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def figure_data_uri(fig: Any) -> str:
    """A matplotlib figure as a PNG data URI (the figure is closed)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def html_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A simple HTML table; cells that start with ``<img`` or ``<div`` are inserted raw."""
    out = ["<table>", "<tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr>"]
    for row in rows:
        cells = []
        for c in row:
            s = str(c) if c is not None else ""
            raw = s.startswith(("<img", "<div", "<span", "<a "))
            cells.append(f"<td>{s if raw else html.escape(s)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def img_tag(uri: str, title: str = "") -> str:
    return f'<img src="{uri}" title="{html.escape(title)}"/>'


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (KFP Markdown visualisation)."""
    lines = ["| " + " | ".join(str(h) for h in header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join("" if c is None else str(c) for c in row) + " |")
    return "\n".join(lines)


_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:0.8em 0}
td,th{border:1px solid #ccc;padding:4px 6px;font-size:13px;vertical-align:top}
th{background:#f3f3f3}
img{image-rendering:pixelated;max-width:100%}
h1{font-size:20px} h2{font-size:16px;margin-top:1.4em}
.small{font-size:11px;color:#555}
"""


def write_html_report(path: str | os.PathLike[str], title: str, sections: Sequence[tuple[str, str]]) -> Path:
    """Write a self-contained HTML page with ``(heading, html_body)`` sections; returns the path."""
    path = Path(path)
    body = [f"<h1>{html.escape(title)}</h1>"]
    for heading, content in sections:
        body.append(f"<h2>{html.escape(heading)}</h2>\n{content}")
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(page)
    os.replace(tmp, path)
    return path
