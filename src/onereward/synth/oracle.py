"""The oracle: scores every evaluation dimension of an edit from pixels.

Inputs are only ``(task, source, mask, prompt, result)``: HxWx3 uint8 RGB arrays for the source
(for image_extend, the canvas) and the result, an HxW bool mask (True = generated region) and the
user prompt (or None). Scene metadata is never used, so the oracle also scores results on
imported pools, as long as prompts follow the world's grammar (``a red circle``, ``the word "OPEN"
in red letters``; vocabulary in :mod:`onereward.synth.world`).

Every score is in [0, 1], higher is better. The dimensions measure different things on purpose,
so one result can win one dimension and lose another (a right-coloured shape behind a colour seam
wins text_alignment and loses consistency; a stripe-shifted fill keeps consistency and loses
structure). The formulas are in the docstrings of the ``*_score`` functions below. Notation:

- ``x`` = result / 255 (float), ``Y`` its luminance (0.299 R + 0.587 G + 0.114 B),
- ``M`` the mask, ``b`` = max(2, round(min(H, W) / 32)) the band width in pixels,
- ``In`` = M minus M eroded by b (the band just inside the mask),
- ``Out`` = M dilated by b minus M (the band just outside the mask),
- ``gx, gy``: forward differences of Y, set to 0 where the two pixels lie on different sides of
  the mask boundary (so that a seam does not count as texture or structure),
- ``mean_S(v)`` the mean of v over the pixels of S.

Everything is vectorised NumPy on the full image (about 1 ms per ``score_all`` at 64 px).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from onereward import tasks
from onereward.errors import InputError
from onereward.synth.world import BACKGROUND_COLOURS, SHAPE_COLOURS, parse_prompt, text_glyphs, text_scale

# Named colours a pixel is classified against (shape colours first, then muted backgrounds).
_PALETTE_NAMES = list(SHAPE_COLOURS) + list(BACKGROUND_COLOURS)
_PALETTE = (
    np.array(
        [SHAPE_COLOURS[n] for n in SHAPE_COLOURS] + [BACKGROUND_COLOURS[n] for n in BACKGROUND_COLOURS],
        dtype=np.float32,
    )
    / 255.0
)
# Expected bbox fill ratio of each shape (area / bbox area) for the shape term of text_alignment.
_SHAPE_FILL = {"circle": np.pi / 4, "square": 1.0, "triangle": 0.5}

COLOUR_MATCH_DISTANCE = 70 / 255  # max RGB distance of a pixel to its named colour


# --- small vectorised helpers ---------------------------------------------------------------------


def _integral(a: np.ndarray) -> np.ndarray:
    c = np.zeros((a.shape[0] + 1, a.shape[1] + 1) + a.shape[2:], dtype=np.float64)
    c[1:, 1:] = np.cumsum(np.cumsum(a, axis=0, dtype=np.float64), axis=1)
    return c


def _box_sum(a: np.ndarray, radius: int) -> np.ndarray:
    """Sum of ``a`` over the (2r+1)^2 window around each pixel (clipped at the image border)."""
    h, w = a.shape[:2]
    c = _integral(a)
    y0 = np.clip(np.arange(h) - radius, 0, h)
    y1 = np.clip(np.arange(h) + radius + 1, 0, h)
    x0 = np.clip(np.arange(w) - radius, 0, w)
    x1 = np.clip(np.arange(w) + radius + 1, 0, w)
    return c[y1][:, x1] - c[y0][:, x1] - c[y1][:, x0] + c[y0][:, x0]


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    return _box_sum(mask.astype(np.float32), radius) > 0.5


def _erode(mask: np.ndarray, radius: int) -> np.ndarray:
    return ~_dilate(~mask, radius)


def _mean(values: np.ndarray, where: np.ndarray, default: float = 0.0) -> float:
    n = int(where.sum())
    return float(values[where].mean()) if n else default


class _Edit:
    """Shared per-call quantities (bands, luminance, gradients), computed once per result."""

    def __init__(
        self, task: str, source: np.ndarray, mask: np.ndarray, prompt: str | None, result: np.ndarray
    ):
        tasks.check_task(task)
        source = np.asarray(source)
        result = np.asarray(result)
        mask = np.asarray(mask)
        if result.ndim != 3 or result.shape[2] != 3:
            raise InputError(f"result: expected an HxWx3 RGB array, got shape {result.shape}")
        if source.shape != result.shape:
            raise InputError(f"source: shape {source.shape} differs from result shape {result.shape}")
        if mask.shape != result.shape[:2]:
            raise InputError(f"mask: shape {mask.shape} differs from the image size {result.shape[:2]}")
        self.task = task
        self.prompt = prompt
        self.mask = mask.astype(bool)
        self.x = result.astype(np.float32) / 255.0
        self.s = source.astype(np.float32) / 255.0
        h, w = self.mask.shape
        self.b = max(2, int(round(min(h, w) / 32)))
        m = self.mask
        self.inner = m & ~_erode(m, self.b)
        self.outer = _dilate(m, self.b) & ~m
        self.y = self.x @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        # Forward differences within one side of the boundary only.
        gx = np.zeros_like(self.y)
        gy = np.zeros_like(self.y)
        gx[:, :-1] = (self.y[:, 1:] - self.y[:, :-1]) * (m[:, 1:] == m[:, :-1])
        gy[:-1, :] = (self.y[1:, :] - self.y[:-1, :]) * (m[1:, :] == m[:-1, :])
        self.gx, self.gy = gx, gy

    @property
    def degenerate(self) -> bool:
        """True when the mask or its complement is empty (no boundary to judge)."""
        return not self.inner.any() or not self.outer.any()


# --- dimensions -----------------------------------------------------------------------------------


def consistency_score(e: _Edit) -> float:
    """Colour and texture continuity across the mask boundary.

    - colour gap ``g_c = mean_{In u Out} || S_in - S_out ||_2 / sqrt(3)`` where ``S_in`` (``S_out``)
      is the local mean colour over the In (Out) band pixels within a (4b+1)^2 window: the colour
      just inside vs just outside the boundary at the same place (a hard colour seam, a lighting
      shift or a washed-out fill raise it; stripes do not, their window means agree);
    - texture gap ``g_t = |E_In - E_Out| / (E_In + E_Out + 0.02)`` with ``E_S = mean_S(|gx| + |gy|)``
      (noise or blur inside the mask raise it);

    ``consistency = exp(-g_c / 0.06) * (1 - 0.6 g_t)``. Degenerate masks score 0.5.
    """
    if e.degenerate:
        return 0.5
    r = 2 * e.b
    inner = e.inner.astype(np.float32)
    outer = e.outer.astype(np.float32)
    n_in = _box_sum(inner, r)[..., None]
    n_out = _box_sum(outer, r)[..., None]
    s_in = _box_sum(e.x * inner[..., None], r) / np.maximum(n_in, 1e-6)
    s_out = _box_sum(e.x * outer[..., None], r) / np.maximum(n_out, 1e-6)
    band = (e.inner | e.outer) & (n_in[..., 0] > 0.5) & (n_out[..., 0] > 0.5)
    gap = np.sqrt(((s_in - s_out) ** 2).sum(-1)) / np.sqrt(3.0)
    g_c = _mean(gap, band)
    energy = np.abs(e.gx) + np.abs(e.gy)
    e_in, e_out = _mean(energy, e.inner), _mean(energy, e.outer)
    g_t = abs(e_in - e_out) / (e_in + e_out + 0.02)
    return float(np.clip(np.exp(-g_c / 0.06) * (1.0 - 0.6 * g_t), 0.0, 1.0))


def structure_score(e: _Edit) -> float:
    """Geometric coherence across the boundary: edges and stripes continue, contours stay intact.

    - continuation error ``e_c``: for pixel pairs (p inside, q outside) adjacent across the
      boundary, the gradient *along* the boundary at p and at q should agree (a stripe or a shape
      contour crossing the boundary has the same tangential gradient on both sides):
      ``e_c = sum |t_p - t_q| / (sum |t_p| + sum |t_q| + 0.01 n)`` over the n pairs, with t = gy for
      horizontal neighbours and t = gx for vertical neighbours;
    - orientation error ``e_o``: structure tensors ``J_S = mean_S([gx^2, gx gy, gy^2])`` of the In
      and Out bands, ``e_o = ||J_In - J_Out|| / (||J_In|| + ||J_Out|| + 1e-4)`` (stripe direction and
      edge density must match; a flat fill next to stripes gives 1);

    ``structure = 1 - 0.6 e_c - 0.4 e_o``, clipped to [0, 1]. Colour shifts leave both terms
    unchanged (gradients are taken within one side of the boundary). Degenerate masks score 0.5.
    """
    if e.degenerate:
        return 0.5
    m = e.mask
    num = 0.0
    den = 0.0
    n = 0
    # Horizontal neighbours across a vertical boundary: tangential gradient is gy.
    cross_h = m[:, :-1] != m[:, 1:]
    if cross_h.any():
        a, c = e.gy[:, :-1][cross_h], e.gy[:, 1:][cross_h]
        num += float(np.abs(a - c).sum())
        den += float(np.abs(a).sum() + np.abs(c).sum())
        n += a.size
    cross_v = m[:-1, :] != m[1:, :]
    if cross_v.any():
        a, c = e.gx[:-1, :][cross_v], e.gx[1:, :][cross_v]
        num += float(np.abs(a - c).sum())
        den += float(np.abs(a).sum() + np.abs(c).sum())
        n += a.size
    e_c = num / (den + 0.01 * n) if n else 0.0
    feats = np.stack([e.gx * e.gx, e.gx * e.gy, e.gy * e.gy], axis=-1)
    j_in = feats[e.inner].mean(0)
    j_out = feats[e.outer].mean(0)
    e_o = float(np.linalg.norm(j_in - j_out) / (np.linalg.norm(j_in) + np.linalg.norm(j_out) + 1e-4))
    return float(np.clip(1.0 - 0.6 * e_c - 0.4 * e_o, 0.0, 1.0))


def aesthetics_score(e: _Edit) -> float:
    """Visual quality of the generated region: no noise, no blur, not washed out, not clipped.

    Over the mask eroded by 1 (``M1``) and the known region eroded by 1 (``K1``), with
    ``L = |4-neighbour Laplacian of Y|`` and ``G = sqrt(gx^2 + gy^2)``:

    - noise ``n = max(0, median_M1(L) - median_K1(L))`` (noise lifts the Laplacian everywhere;
      edges of shapes or stripes are sparse and also present outside);
    - blur ``z = clip(1 - rho / 1.2, 0, 1) * min(1, A / (0.02 |M1|))``, with edge pixels
      ``E = M1 & (G > 0.05)``, ``A = |E|`` and sharpness ``rho = sum_E L / sum_E G`` (about 2 for the
      world's crisp edges, falling as edges widen); no edges, no blur penalty;
    - washed out ``w = clip(1 - (C_M + 0.03) / (C_K + 0.03), 0, 1)`` with chroma
      ``C_S = mean_S(max_c x - min_c x)`` (over M and the Out band);
    - clipping ``k = max(0, f_M - f_K)``, f = share of pixels with a channel at 0 or 255;

    ``aesthetics = exp(-(n / 0.04 + 1.2 z + 1.5 w + 4 k))``.
    """
    m = e.mask
    m1 = _erode(m, 1)
    if not m1.any():
        m1 = m
    if not m1.any():
        return 0.5
    k1 = _erode(~m, 1)
    y = e.y
    yp = np.pad(y, 1, mode="edge")
    lap = np.abs(yp[:-2, 1:-1] + yp[2:, 1:-1] + yp[1:-1, :-2] + yp[1:-1, 2:] - 4 * y)
    lap_in = lap[m1]
    noise = float(np.median(lap_in)) - (float(np.median(lap[k1])) if k1.any() else 0.0)
    noise = max(0.0, noise)
    grad = np.sqrt(e.gx**2 + e.gy**2)
    edges = m1 & (grad > 0.05)
    n_edges = int(edges.sum())
    blur = 0.0
    if n_edges:
        rho = float(lap[edges].sum() / (grad[edges].sum() + 1e-6))
        blur = float(np.clip(1.0 - rho / 1.2, 0.0, 1.0)) * min(1.0, n_edges / (0.02 * m1.sum()))
    chroma = e.x.max(-1) - e.x.min(-1)
    ref = e.outer if e.outer.any() else ~m
    c_m = _mean(chroma, m)
    c_k = _mean(chroma, ref, default=c_m)
    washed = float(np.clip(1.0 - (c_m + 0.03) / (c_k + 0.03), 0.0, 1.0))
    raw = np.rint(e.x * 255)
    clipped_px = ((raw <= 0) | (raw >= 255)).any(-1)
    clip = max(0.0, _mean(clipped_px, m) - _mean(clipped_px, ~m))
    return float(np.exp(-(noise / 0.04 + 1.2 * blur + 1.5 * washed + 4.0 * clip)))


def colour_match(x: np.ndarray, colour: str) -> np.ndarray:
    """HxW bool: pixels whose nearest palette colour is ``colour`` within COLOUR_MATCH_DISTANCE."""
    d = np.sqrt(((x[..., None, :] - _PALETTE) ** 2).sum(-1))  # H x W x P
    idx = _PALETTE_NAMES.index(colour)
    return (d.argmin(-1) == idx) & (d[..., idx] < COLOUR_MATCH_DISTANCE)


def _text_iou(hits: np.ndarray, glyphs: np.ndarray) -> float:
    """Best IoU of the glyph template against the hit map over all placements."""
    th, tw = glyphs.shape
    ys, xs = np.nonzero(hits)
    if ys.size == 0:
        return 0.0
    # Crop around the hits, padded so that every placement covering a hit is considered.
    y0, y1 = max(0, ys.min() - th), min(hits.shape[0], ys.max() + th + 1)
    x0, x1 = max(0, xs.min() - tw), min(hits.shape[1], xs.max() + tw + 1)
    crop = np.pad(hits[y0:y1, x0:x1].astype(np.float32), ((th, th), (tw, tw)))
    windows = np.lib.stride_tricks.sliding_window_view(crop, (th, tw))
    t = glyphs.astype(np.float32)
    inter = np.einsum("ijkl,kl->ij", windows, t, optimize=True)
    win_sum = _box_window_sum(crop, th, tw)
    union = t.sum() + win_sum - inter
    return float((inter / np.maximum(union, 1.0)).max())


def _box_window_sum(a: np.ndarray, th: int, tw: int) -> np.ndarray:
    c = _integral(a)
    return c[th:, tw:] - c[:-th, tw:] - c[th:, :-tw] + c[:-th, :-tw]


def text_alignment_score(e: _Edit) -> float:
    """Does the mask region show what the prompt names (colour, shape, or a word in a colour)?

    With ``H`` = mask pixels whose nearest palette colour is the named colour within 70/255:

    - shape prompt (``a red circle``): presence ``p = min(1, |H| / (0.01 H W))``; shape term
      ``s = exp(-((f - f_shape) / 0.12)^2)`` where f = |H in its 2-98 % quantile box| / box area
      and f_shape = pi/4 (circle), 1 (square), 1/2 (triangle); ``score = p (0.4 + 0.6 s)``
      (``p`` alone when no shape is named);
    - text prompt (``the word "OPEN" in red letters``): the word is rendered with the world's
      bitmap font as a binary template T; ``p = min(1, |H| / (0.5 |T|))``, ``iou`` = the best
      IoU of T over all placements on H; ``score = p (0.2 + 0.8 min(1, iou / 0.7))``;
    - a prompt naming no colour of the vocabulary cannot be judged: 0.5.
    """
    parsed = parse_prompt(e.prompt)
    colour = parsed["colour"]
    if colour is None:
        return 0.5
    hits = colour_match(e.x, colour) & e.mask
    n_hits = int(hits.sum())
    h, w = e.mask.shape
    if parsed["word"]:
        glyphs = text_glyphs(parsed["word"], text_scale(min(h, w)))
        presence = min(1.0, n_hits / (0.5 * glyphs.sum()))
        if presence == 0.0:
            return 0.0
        iou = _text_iou(hits, glyphs)
        return float(presence * (0.2 + 0.8 * min(1.0, iou / 0.7)))
    presence = min(1.0, n_hits / (0.01 * h * w))
    shape = parsed["shape"]
    if shape is None or n_hits == 0:
        return float(presence)
    ys, xs = np.nonzero(hits)
    y0, y1 = np.quantile(ys, [0.02, 0.98])
    x0, x1 = np.quantile(xs, [0.02, 0.98])
    y0, y1, x0, x1 = int(np.floor(y0)), int(np.ceil(y1)), int(np.floor(x0)), int(np.ceil(x1))
    box_area = (y1 - y0 + 1) * (x1 - x0 + 1)
    inside = int(((ys >= y0) & (ys <= y1) & (xs >= x0) & (xs <= x1)).sum())
    fill = inside / max(box_area, 1)
    s = float(np.exp(-(((fill - _SHAPE_FILL[shape]) / 0.12) ** 2)))
    return float(presence * (0.4 + 0.6 * s))


def removal_quality_score(e: _Edit) -> float:
    """Is the object gone and the hole filled like its surroundings?

    Colours are quantised to 8 levels per channel; a colour bin is *explained* when the ring
    ``R = (M dilated by 2b) minus M`` holds >= 1 % of its pixels in that bin or a neighbouring
    bin (+-1 level per channel). Then:

    - ``u`` = share of mask pixels of the result in unexplained bins, ``u_src`` the same for the
      source (the object); ``u_rel = min(1, u / max(u_src, 0.05))`` (object left in place: 1);
    - ``c`` = share of the source's unexplained mask pixels that the result changed by more than
      0.12 in some channel (the object must differ from the source there);
    - ``t = |E_M - E_R| / (E_M + E_R + 0.02)``, E = mean(|gx| + |gy|) (a smeared or noisy hole);

    ``removal_quality = (1 - u_rel) (0.4 + 0.6 c) (1 - 0.5 t)``. Degenerate masks score 0.5.
    """
    m = e.mask
    ring = _dilate(m, 2 * e.b) & ~m
    if not m.any() or not ring.any():
        return 0.5
    levels = 8

    def bins(img: np.ndarray) -> np.ndarray:
        q = np.clip((img * levels).astype(np.int32), 0, levels - 1)
        return (q[..., 0] * levels + q[..., 1]) * levels + q[..., 2]

    bx, bs = bins(e.x), bins(e.s)
    hist = np.bincount(bx[ring], minlength=levels**3).reshape(levels, levels, levels)
    present = hist >= max(1.0, 0.01 * ring.sum())
    padded = np.pad(present, 1)
    explained = np.zeros_like(present)
    for dz in range(3):
        for dy in range(3):
            for dx in range(3):
                explained |= padded[dz : dz + levels, dy : dy + levels, dx : dx + levels]
    explained = explained.reshape(-1)
    unexplained_res = ~explained[bx] & m
    unexplained_src = ~explained[bs] & m
    n_mask = m.sum()
    u = unexplained_res.sum() / n_mask
    u_src = unexplained_src.sum() / n_mask
    u_rel = min(1.0, float(u) / max(float(u_src), 0.05))
    if unexplained_src.any():
        changed = (np.abs(e.x - e.s).max(-1) > 0.12) & unexplained_src
        c = float(changed.sum() / unexplained_src.sum())
    else:
        c = 1.0
    energy = np.abs(e.gx) + np.abs(e.gy)
    e_m, e_r = _mean(energy, m), _mean(energy, ring)
    t = abs(e_m - e_r) / (e_m + e_r + 0.02)
    return float(np.clip((1.0 - u_rel) * (0.4 + 0.6 * c) * (1.0 - 0.5 * t), 0.0, 1.0))


_SCORERS: dict[str, Callable[[_Edit], float]] = {
    tasks.TEXT_ALIGNMENT: text_alignment_score,
    tasks.CONSISTENCY: consistency_score,
    tasks.STRUCTURE: structure_score,
    tasks.AESTHETICS: aesthetics_score,
    tasks.REMOVAL_QUALITY: removal_quality_score,
}


def _check_dimension(task: str, dimension: str, prompt: str | None) -> None:
    allowed = tasks.dimensions_for(task, prompt)
    if dimension not in allowed:
        raise InputError(
            f"dimension: {dimension!r} is not scored for task {task!r} (expected one of {allowed})"
        )


def score(
    task: str,
    dimension: str,
    source: np.ndarray,
    mask: np.ndarray,
    prompt: str | None,
    result: np.ndarray,
) -> float:
    """Score one dimension of ``result`` in [0, 1] (higher is better).

    ``source``/``result``: HxWx3 uint8 RGB; ``mask``: HxW bool (True = generated region);
    ``prompt``: the user prompt or None. ``dimension`` must be one of
    ``tasks.dimensions_for(task, prompt)`` (InputError otherwise).
    """
    _check_dimension(task, dimension, prompt)
    return _SCORERS[dimension](_Edit(task, source, mask, prompt, result))


def score_all(
    task: str,
    source: np.ndarray,
    mask: np.ndarray,
    prompt: str | None,
    result: np.ndarray,
) -> dict[str, float]:
    """Scores of every dimension of ``tasks.dimensions_for(task, prompt)``, sharing the work."""
    edit = _Edit(task, source, mask, prompt, result)
    return {dim: _SCORERS[dim](edit) for dim in tasks.dimensions_for(task, prompt)}
