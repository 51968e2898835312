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
- ``mean_S(v)`` the mean of v over the pixels of S,
- shape colours: pixels whose nearest colour of the world's palette (shape and background
  colours) is a shape colour within 70/255 (RGB distance), grown by 1 px; they are foreground and
  left out of background statistics.

Everything is vectorised NumPy (``benchmarks/bench_synth.py`` measures ``score_all``: about
1-2 ms per call at 64 px on one core; ``score_all`` shares the work between dimensions).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np

from onereward import tasks
from onereward.errors import InputError
from onereward.synth.world import (
    BACKGROUND_COLOURS,
    SHAPE_COLOURS,
    dilate_mask,
    parse_prompt,
    text_glyphs,
    text_scale,
)

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
    """Sum of ``a`` over the (2r+1)^2 window around each pixel (zero outside the image).

    Separable running sums over padded axes: two cumsums, no per-pixel indexing.
    """
    k = 2 * radius + 1
    out = a
    for axis in (0, 1):
        pad = [(0, 0)] * out.ndim
        pad[axis] = (radius + 1, radius)
        c = np.cumsum(np.pad(out, pad), axis=axis)
        hi = [slice(None)] * out.ndim
        lo = [slice(None)] * out.ndim
        hi[axis] = slice(k, None)
        lo[axis] = slice(None, -k)
        out = c[tuple(hi)] - c[tuple(lo)]
    return out


def _csum(a: np.ndarray) -> np.ndarray:
    """Sum over the last axis of length 3 (numpy's reduction over a tiny inner axis is slow)."""
    return a[..., 0] + a[..., 1] + a[..., 2]


def _mean(values: np.ndarray, where: np.ndarray, default: float = 0.0) -> float:
    n = int(where.sum())
    return float(values[where].mean()) if n else default


class _Edit:
    """Shared per-call quantities (bands, luminance, gradients, palette), computed once per result."""

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
        self.result_u8 = result.astype(np.uint8)
        self.source_u8 = source.astype(np.uint8)
        self.x = result.astype(np.float32) / 255.0
        self.x_channels = np.ascontiguousarray(np.moveaxis(self.x, -1, 0))  # 3 x H x W
        self.s = source.astype(np.float32) / 255.0
        h, w = self.mask.shape
        side = min(h, w)
        self.b = max(2, int(round(side / 32)))
        self.r_ctx = max(2 * self.b, int(round(side / 8)))
        self.r_wide = max(2 * self.b, int(round(side / 4)))
        m = self.mask
        self._grown: dict[tuple[bool, int], np.ndarray] = {}
        self.inner = m & self.grown(self.b, outside=True)
        self.outer = self.grown(self.b) & ~m
        # Weighted sums, not matmuls: a BLAS call per tiny product costs more than the arithmetic.
        self.y = 0.299 * self.x[..., 0] + 0.587 * self.x[..., 1] + 0.114 * self.x[..., 2]
        # Forward differences within one side of the boundary only.
        gx = np.zeros_like(self.y)
        gy = np.zeros_like(self.y)
        gx[:, :-1] = (self.y[:, 1:] - self.y[:, :-1]) * (m[:, 1:] == m[:, :-1])
        gy[:-1, :] = (self.y[1:, :] - self.y[:-1, :]) * (m[1:, :] == m[:-1, :])
        self.gx, self.gy = gx, gy
        self._palette: tuple[np.ndarray, np.ndarray] | None = None
        self._shape_px: np.ndarray | None = None
        self._pairs: tuple[np.ndarray, np.ndarray] | None = None
        self._context: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
        self._grown: dict[tuple[bool, int], np.ndarray] = {}

    def grown(self, radius: int, outside: bool = False) -> np.ndarray:
        """The mask (or, with ``outside``, its complement) dilated by ``radius``; cached."""
        key = (outside, radius)
        if key not in self._grown:
            self._grown[key] = dilate_mask(~self.mask if outside else self.mask, radius)
        return self._grown[key]

    @property
    def degenerate(self) -> bool:
        """True when the mask or its complement is empty (no boundary to judge)."""
        return not self.inner.any() or not self.outer.any()

    @property
    def palette(self) -> tuple[np.ndarray, np.ndarray]:
        """(index of the nearest palette colour, distance to it) per pixel."""
        if self._palette is None:
            lut_index, lut_distance = _palette_lut()
            key = _colour_keys(self.result_u8.reshape(-1, 3)).reshape(self.mask.shape)
            self._palette = (lut_index[key], lut_distance[key])
        return self._palette

    @property
    def context_match(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Background colours of the In band matched to the nearest colour of the context ring.

        Returns (unique In colours U x 3 in [0, 1], their pixel counts, the context colours V x 3,
        the distance ||.||_2 / sqrt(3) of each In colour to its nearest context colour). Colours
        are quantised to 64 levels.
        """
        if self._context is None:
            ring = self.grown(self.r_ctx) & ~self.mask
            ctx = np.unique(_colour_keys(self.result_u8[ring]))
            if ctx.size > 512:  # bound the distance matrix on noisy or photographic context
                ctx = ctx[np.linspace(0, ctx.size - 1, 512).astype(int)]
            keys, counts = np.unique(
                _colour_keys(self.result_u8[self.inner & ~self.shape_px]), return_counts=True
            )
            a, c = _keys_to_rgb(keys), _keys_to_rgb(ctx)
            if a.size == 0 or c.size == 0:
                self._context = (a, counts, c, np.zeros(len(a), dtype=np.float32))
            else:
                d2 = _csum((a[:, None, :] - c[None, :, :]) ** 2)
                dist = np.sqrt(d2.min(1)) / np.sqrt(3.0)
                self._context = (a, counts, c, dist)
        return self._context

    @property
    def shape_core(self) -> np.ndarray:
        """Pixels of shape colours (nearest palette colour is a shape colour within 70/255)."""
        idx, dist = self.palette
        return (idx < len(SHAPE_COLOURS)) & (dist < COLOUR_MATCH_DISTANCE)

    @property
    def shape_px(self) -> np.ndarray:
        """Pixels of shape colours and their 1-px rim: foreground, excluded from background statistics."""
        if self._shape_px is None:
            self._shape_px = dilate_mask(self.shape_core, 1)
        return self._shape_px

    def texture_energy(self, region: np.ndarray) -> float:
        """Mean |luminance difference| of the 4-neighbour pairs starting in ``region`` whose two
        pixels are on one side of the boundary and both off shape colours.

        Pairs, not pixels, are filtered: a stripe edge next to a letter still counts.
        """
        if self._pairs is None:
            core = self.shape_core
            m = self.mask
            vx = np.zeros_like(m)
            vy = np.zeros_like(m)
            vx[:, :-1] = (m[:, 1:] == m[:, :-1]) & ~core[:, 1:] & ~core[:, :-1]
            vy[:-1, :] = (m[1:, :] == m[:-1, :]) & ~core[1:, :] & ~core[:-1, :]
            self._pairs = (np.abs(self.gx) * vx + np.abs(self.gy) * vy, vx.astype(np.float32) + vy)
        energy, count = self._pairs
        n = float(count[region].sum())
        return float(energy[region].sum()) / n if n else 0.0


@lru_cache(maxsize=1)
def _palette_lut() -> tuple[np.ndarray, np.ndarray]:
    """Nearest palette colour (index, distance) for every colour quantised to 64 levels per channel.

    Built once (262,144 entries); a lookup per pixel then replaces a distance computation.
    """
    keys = np.arange(64**3, dtype=np.int32)
    rgb = _keys_to_rgb(keys) + 2.0 / 255.0  # bin centres
    best = np.full(len(keys), np.inf, dtype=np.float32)
    index = np.zeros(len(keys), dtype=np.int16)
    for i, colour in enumerate(_PALETTE):
        d2 = ((rgb - colour) ** 2).sum(1)
        closer = d2 < best
        best[closer] = d2[closer]
        index[closer] = i
    return index, np.sqrt(best)


def _colour_keys(pixels: np.ndarray) -> np.ndarray:
    """Pack uint8 RGB pixels (N x 3) quantised to 64 levels into one int per colour."""
    q = (pixels >> 2).astype(np.int32)
    return (q[:, 0] << 12) | (q[:, 1] << 6) | q[:, 2]


def _keys_to_rgb(keys: np.ndarray) -> np.ndarray:
    return np.stack([(keys >> 12) & 63, (keys >> 6) & 63, keys & 63], axis=-1).astype(np.float32) * 4 / 255.0


# --- dimensions -----------------------------------------------------------------------------------


def consistency_score(e: _Edit) -> float:
    """Colour and texture continuity across the mask boundary.

    - colour gap ``g_c``: for every background pixel of the In band (shape colours left out), the
      distance from its colour to the
      nearest colour of the context ring ``C = (M dilated by r) minus M`` (r = min(H, W) / 8, wide
      enough to hold both colours of any stripe pattern; colours quantised to 64 levels),
      ``d = ||.||_2 / sqrt(3)`` on [0, 1] RGB; ``g_c = mean_In max(0, d - 0.015)`` (the tolerance
      absorbs quantisation and gradient steps): a colour seam, a lighting shift or a washed-out
      fill bring colours the surroundings do not have; continuing stripes, checkers and
      gradients do not;
    - texture gap ``g_t = |E_in - E_out| / (E_in + E_out + 0.02)`` with E = the mean |gx| or |gy|
      over the 4-neighbour pairs within r of the boundary inside (E_in) and outside (E_out) whose
      pixels are both off shape colours (noise or blur inside the mask raise it);

    ``consistency = exp(-g_c / 0.04) * (1 - 0.6 g_t)``. Degenerate masks score 0.5.
    """
    if e.degenerate:
        return 0.5
    ring = e.grown(e.r_ctx) & ~e.mask
    _, counts, _, nearest = e.context_match
    g_c = float((np.maximum(nearest - 0.015, 0.0) * counts).sum() / max(counts.sum(), 1))
    e_in = e.texture_energy(e.mask & e.grown(e.r_ctx, outside=True))
    e_out = e.texture_energy(ring)
    g_t = abs(e_in - e_out) / (e_in + e_out + 0.02)
    return float(np.clip(np.exp(-g_c / 0.04) * (1.0 - 0.6 * g_t), 0.0, 1.0))


def structure_score(e: _Edit) -> float:
    """Geometric coherence across the boundary: edges and stripes continue, contours stay intact.

    Gradients here are per RGB channel (an edge between two colours of equal luminance counts);
    ``|.|`` sums the channels.

    - continuation error ``e_c``: for pixel pairs (p, q) adjacent across the boundary, the
      gradient *along* the boundary at p and near q should agree (a stripe or a shape contour
      crossing the boundary has the same tangential gradient on both sides):
      ``e_c = sum min_{k=-1,0,1} |t_p - t_{q+k}| / (sum |t_p| + sum |t_q| + 0.01 n)``, symmetrised
      over (p, q) and (q, p), over the n pairs; t = the absolute RGB forward difference along y
      for horizontal neighbours (k shifts rows) and along x for vertical neighbours (k shifts
      columns); absolute, because at a checker corner an edge continues with the opposite sign;
    - orientation error ``e_o``: colour structure tensors
      ``J_S = mean_S([Gx.Gx, Gx.Gy, Gy.Gy])`` (dot products over the channels) of the
      background within r = min(H, W) / 4 of the boundary inside (``W_in``) and outside (``W_out``),
      with ``Gx, Gy`` RGB differences over k = 2b pixels (both ends on one side of the
      boundary and off shape-coloured pixels and their rim; means over those pairs only), so
      that slow gradients count;
      ``e_o = ||J_in - J_out|| / (||J_in|| + ||J_out|| + 1e-5)`` (stripe direction and density and
      the direction of a gradient must match; a flat fill next to stripes gives 1);

    ``structure = 1 - 0.6 e_c - 0.4 e_o``, clipped to [0, 1]. Colour shifts leave both terms
    unchanged (gradients are taken within one side of the boundary); so does swapping the two
    colours of a stripe pattern (every edge stays in place, as at a checker corner). Degenerate
    masks score 0.5.
    """
    if e.degenerate:
        return 0.5
    e_c, e_o = _structure_terms(e)
    return float(np.clip(1.0 - 0.6 * e_c - 0.4 * e_o, 0.0, 1.0))


def _structure_terms(e: _Edit) -> tuple[float, float]:
    """(continuation error, orientation error) of :func:`structure_score`."""
    m = e.mask
    xc = e.x_channels  # 3 x H x W
    h, w = m.shape

    # |forward differences| per channel along y (ay) and x (ax), 0 across the boundary.
    ay = np.zeros_like(xc)
    ax = np.zeros_like(xc)
    ay[:, :-1, :] = np.abs(xc[:, 1:, :] - xc[:, :-1, :]) * (m[1:, :] == m[:-1, :])
    ax[:, :, :-1] = np.abs(xc[:, :, 1:] - xc[:, :, :-1]) * (m[:, 1:] == m[:, :-1])
    num = 0.0
    den = 0.0
    n = 0
    # Horizontal neighbours (i, j) | (i, j + 1) across a vertical boundary compare the tangential
    # gradient (along y); an edge may step by one pixel from p to q (diagonal stripes), so q's
    # gradient is taken at rows i - 1, i, i + 1 too. Vertical neighbours likewise along x.
    # Magnitudes: at a checker corner on the boundary the edge continues with the opposite sign.
    ii, jj = np.nonzero(m[:, :-1] != m[:, 1:])
    kk, ll = np.nonzero(m[:-1, :] != m[1:, :])
    for t, (pr, pc), (qr, qc), along_rows in (
        (ay, (ii, jj), (ii, jj + 1), True),
        (ay, (ii, jj + 1), (ii, jj), True),
        (ax, (kk, ll), (kk + 1, ll), False),
        (ax, (kk + 1, ll), (kk, ll), False),
    ):
        if pr.size == 0:
            continue
        t_p = t[:, pr, pc]  # 3 x n
        t_q = t[:, qr, qc]
        best = np.abs(t_p - t_q).sum(0)
        for k in (-1, 1):
            if along_rows:
                t_k = t[:, np.clip(qr + k, 0, h - 1), qc]
            else:
                t_k = t[:, qr, np.clip(qc + k, 0, w - 1)]
            best = np.minimum(best, np.abs(t_p - t_k).sum(0))
        num += float(best.sum()) / 2
        den += float(t_p.sum()) / 2 + float(t_q.sum()) / 2
        n += pr.size
    e_c = num / (den + 0.01 * n) if n else 0.0
    background = ~e.shape_px
    w_in = m & e.grown(e.r_wide, outside=True) & background
    w_out = e.grown(e.r_wide) & ~m & background
    e_o = 0.0
    if w_in.any() and w_out.any():
        # Differences over k = 2b pixels: smooth gradients (slopes of a few levels per pixel)
        # register, and a pair counts only with both ends on one side and off any shape.
        k = 2 * e.b
        vx = np.zeros_like(m)
        vy = np.zeros_like(m)
        vx[:, :-k] = (m[:, k:] == m[:, :-k]) & background[:, k:] & background[:, :-k]
        vy[:-k, :] = (m[k:, :] == m[:-k, :]) & background[k:, :] & background[:-k, :]
        gxk = np.zeros_like(xc)
        gyk = np.zeros_like(xc)
        gxk[:, :, :-k] = xc[:, :, k:] - xc[:, :, :-k]
        gyk[:, :-k, :] = xc[:, k:, :] - xc[:, :-k, :]
        jxx = (gxk * gxk).sum(0)
        jxy = (gxk * gyk).sum(0)
        jyy = (gyk * gyk).sum(0)

        def tensor(region: np.ndarray) -> np.ndarray:
            # Means over the valid pairs only (a pair cut by the boundary is unknown, not flat).
            return np.array([_mean(jxx, region & vx), _mean(jxy, region & vx & vy), _mean(jyy, region & vy)])

        j_in, j_out = tensor(w_in), tensor(w_out)
        e_o = float(np.linalg.norm(j_in - j_out) / (np.linalg.norm(j_in) + np.linalg.norm(j_out) + 1e-5))
    return e_c, e_o


def _min_neighbour_diff(y: np.ndarray) -> np.ndarray:
    """Per pixel, the smallest absolute luminance difference to its 8 neighbours.

    Piecewise-constant content (shapes, stripes, 1-px letter strokes, diagonal edges) always has
    an equal neighbour, smooth gradients a nearly equal one; pixel noise has none.
    """
    h, w = y.shape
    yp = np.pad(y, 1, mode="edge")
    diffs = [
        np.abs(yp[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] - y)
        for dy in (-1, 0, 1)
        for dx in (-1, 0, 1)
        if dy or dx
    ]
    return np.minimum.reduce(diffs)


def aesthetics_score(e: _Edit) -> float:
    """Visual quality of the generated region: no noise, no blur, not washed out, not clipped.

    With ``M1`` = the mask eroded by 1, ``K1`` = the known region eroded by 1:

    - noise ``n = max(0, mean_M1(N) - mean_K1(N))`` with N = the smallest absolute luminance
      difference of a pixel to its 8 neighbours (0 for crisp shapes, stripes, letters, ~0 for
      gradients, large for pixel noise);
    - blur ``z = clip(1 - rho / 1.0, 0, 1) * min(1, |E| / (0.02 |M1|))``: edge pixels
      ``E = M1 & (G > 0.05)``, G = sqrt(gx^2 + gy^2), sharpness ``rho = sum_E L / sum_E G`` with
      L = |4-neighbour Laplacian of Y| (crisp edges of the world give rho ~ 1.1-1.6, blurred ones
      less); no edges, no blur penalty;
    - washed out ``w = mean_In w_p`` over the background colours p of the In band (shape colours
      left out) with, over the context colours c (as in consistency), ``w_p = [d_p > 0.03] max_c
      [0.1 <= a <= 0.95] exp(-(r / 0.03)^2)`` where ``a`` is the position of p's projection on the
      segment from c to white, r its distance to that segment (/ sqrt(3)) and d_p the distance of
      p to its nearest context colour: p is a context colour blended towards white (a random
      colour shift, a seam, rarely lies on that segment);
    - clipping ``k = max(0, f_M - f_K)``, f = share of pixels with a channel at 0 or 255;

    ``aesthetics = exp(-(n / 0.012 + 1.2 z + 3 w + 4 k))``.
    """
    m = e.mask
    m1 = m & ~e.grown(1, outside=True)
    if not m1.any():
        m1 = m
    if not m1.any():
        return 0.5
    k1 = ~e.grown(1)
    nd = _min_neighbour_diff(e.y)
    noise = max(0.0, _mean(nd, m1) - _mean(nd, k1))
    y = e.y
    yp = np.pad(y, 1, mode="edge")
    lap = np.abs(yp[:-2, 1:-1] + yp[2:, 1:-1] + yp[1:-1, :-2] + yp[1:-1, 2:] - 4 * y)
    grad = np.sqrt(e.gx**2 + e.gy**2)
    edges = m1 & (grad > 0.05)
    n_edges = int(edges.sum())
    blur = 0.0
    if n_edges:
        rho = float(lap[edges].sum() / (grad[edges].sum() + 1e-6))
        blur = float(np.clip(1.0 - rho / 1.0, 0.0, 1.0)) * min(1.0, n_edges / (0.02 * m1.sum()))
    washed = 0.0
    colours, counts, context, nearest = e.context_match
    if counts.sum() > 0 and len(context):
        # Project each In colour p on the segment from each context colour c towards white.
        towards_white = 1.0 - context  # V x 3
        offset = colours[:, None, :] - context[None, :, :]  # U x V x 3
        alpha = _csum(offset * towards_white) / np.maximum(_csum(towards_white**2), 1e-6)
        residual = np.sqrt(_csum((offset - alpha[..., None] * towards_white) ** 2)) / np.sqrt(3.0)
        evidence = ((alpha >= 0.1) & (alpha <= 0.95)) * np.exp(-((residual / 0.03) ** 2))
        washed_p = evidence.max(1) * (nearest > 0.03)
        washed = float((washed_p * counts).sum() / counts.sum())
    saturated = (e.result_u8 == 0) | (e.result_u8 == 255)
    clipped_px = saturated[..., 0] | saturated[..., 1] | saturated[..., 2]
    clip = max(0.0, _mean(clipped_px, m) - _mean(clipped_px, ~m))
    return float(np.exp(-(noise / 0.012 + 1.2 * blur + 3.0 * washed + 4.0 * clip)))


def colour_match(image: np.ndarray, colour: str) -> np.ndarray:
    """HxW bool: pixels of an HxWx3 uint8 image whose nearest palette colour is ``colour`` within
    COLOUR_MATCH_DISTANCE (the test text_alignment applies inside the mask)."""
    if colour not in _PALETTE_NAMES:
        raise InputError(f"colour: {colour!r} is not in the world's palette {_PALETTE_NAMES}")
    lut_index, lut_distance = _palette_lut()
    image = np.asarray(image, dtype=np.uint8)
    key = _colour_keys(image.reshape(-1, 3)).reshape(image.shape[:2])
    return (lut_index[key] == _PALETTE_NAMES.index(colour)) & (lut_distance[key] < COLOUR_MATCH_DISTANCE)


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
    nh, nw = crop.shape[0] - th + 1, crop.shape[1] - tw + 1
    # Cross-correlation of the hit map with the template by FFT (circular, but the zero padding
    # of th/tw on every side keeps the valid placements free of wrap-around).
    shape = crop.shape
    spectrum = np.fft.rfft2(crop) * np.conj(np.fft.rfft2(glyphs.astype(np.float32), s=shape))
    inter = np.rint(np.fft.irfft2(spectrum, s=shape)[:nh, :nw])
    win_sum = _box_window_sum(crop, th, tw)
    union = float(glyphs.sum()) + win_sum - inter
    return float((inter / np.maximum(union, 1.0)).max())


def _box_window_sum(a: np.ndarray, th: int, tw: int) -> np.ndarray:
    c = _integral(a)
    return c[th:, tw:] - c[:-th, tw:] - c[th:, :-tw] + c[:-th, :-tw]


def text_alignment_score(e: _Edit) -> float:
    """Does the mask region show what the prompt names (colour, shape, or a word in a colour)?

    With ``H`` = mask pixels whose nearest palette colour is the named colour within 70/255:

    - shape prompt (``a red circle``): presence ``p = min(1, |H| / (0.005 H W))``; shape term
      ``s = exp(-((f - f_shape) / 0.12)^2)`` where f = |H in B| / area(B), B = the bounding box of
      the pixels of H with >= 2 other pixels of H among their 8 neighbours, and f_shape =
      pi/4 (circle), 1 (square), 1/2 (triangle); ``score = p (0.4 + 0.6 s)``
      (``p`` alone when no shape is named);
    - text prompt (``the word "OPEN" in red letters``): the word is rendered with the world's
      bitmap font as a binary template T; ``p = min(1, |H| / (0.5 |T|))``, ``iou`` = the best
      IoU of T over all placements on H;
      ``score = p (0.2 + 0.8 clip((iou - 0.6) / 0.35, 0, 1))`` (other words of the vocabulary
      reach IoU <= 0.74);
    - a prompt naming no colour of the vocabulary cannot be judged: 0.5.
    """
    parsed = parse_prompt(e.prompt)
    colour = parsed["colour"]
    if colour is None:
        return 0.5
    idx, dist = e.palette
    hits = (idx == _PALETTE_NAMES.index(colour)) & (dist < COLOUR_MATCH_DISTANCE) & e.mask
    n_hits = int(hits.sum())
    h, w = e.mask.shape
    if parsed["word"]:
        glyphs = text_glyphs(parsed["word"], text_scale(min(h, w)))
        presence = min(1.0, n_hits / (0.5 * glyphs.sum()))
        if presence == 0.0:
            return 0.0
        iou = _text_iou(hits, glyphs)
        return float(presence * (0.2 + 0.8 * np.clip((iou - 0.6) / 0.35, 0.0, 1.0)))
    presence = min(1.0, n_hits / (0.005 * h * w))
    shape = parsed["shape"]
    if shape is None or n_hits == 0:
        return float(presence)
    # Isolated hit pixels (noise that happens to match the colour) do not define the bbox.
    solid = hits & (_box_sum(hits.astype(np.float32), 1) >= 2.5)
    ys, xs = np.nonzero(solid if solid.any() else hits)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    box_area = (y1 - y0) * (x1 - x0)
    inside = int(hits[y0:y1, x0:x1].sum())
    fill = inside / max(box_area, 1)
    s = float(np.exp(-(((fill - _SHAPE_FILL[shape]) / 0.12) ** 2)))
    return float(presence * (0.4 + 0.6 * s))


def removal_quality_score(e: _Edit) -> float:
    """Is the object gone and the hole filled like its surroundings?

    Colours are quantised to 16 levels per channel; a colour bin is *explained* when the ring
    ``R = (M dilated by 2b) minus M`` holds >= 1 % of its pixels in that bin or a neighbouring
    bin (+-1 level per channel). Then:

    - ``u`` = share of mask pixels of the result in unexplained bins, ``u_src`` the same for the
      source (the object); ``u_rel = min(1, u / max(u_src, 0.05))`` (object left in place: 1);
    - ``c`` = share of the source's unexplained mask pixels that the result changed by more than
      0.12 in some channel (the object must differ from the source there);
    - ``t = |E_M - E_R| / (E_M + E_R + 0.02)``, E = the mean |gx| or |gy| over the 4-neighbour
      pairs in M (in R) whose pixels are both off shape colours: a smeared or noisy hole;

    ``removal_quality = (1 - u_rel) (0.4 + 0.6 c) (1 - 0.5 t)``. Degenerate masks score 0.5.
    """
    m = e.mask
    ring = e.grown(2 * e.b) & ~m
    if not m.any() or not ring.any():
        return 0.5
    levels = 16

    def bins(img: np.ndarray) -> np.ndarray:  # uint8 RGB -> bin index of 16 levels per channel
        q = (img[m] >> 4).astype(np.int32)
        return (q[:, 0] * levels + q[:, 1]) * levels + q[:, 2]

    ring_q = (e.result_u8[ring] >> 4).astype(np.int32)
    ring_bins = (ring_q[:, 0] * levels + ring_q[:, 1]) * levels + ring_q[:, 2]
    hist = np.bincount(ring_bins, minlength=levels**3).reshape(levels, levels, levels)
    explained = hist >= max(1.0, 0.01 * ring.sum())
    for axis in range(3):  # grow by one level per channel (separable 3x3x3 dilation)
        grown = explained.copy()
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        grown[tuple(hi)] |= explained[tuple(lo)]
        grown[tuple(lo)] |= explained[tuple(hi)]
        explained = grown
    explained = explained.reshape(-1)
    unexplained_res = ~explained[bins(e.result_u8)]
    unexplained_src = ~explained[bins(e.source_u8)]
    u = unexplained_res.mean()
    u_src = unexplained_src.mean()
    u_rel = min(1.0, float(u) / max(float(u_src), 0.05))
    if unexplained_src.any():
        diff = np.abs(e.x[m] - e.s[m])
        changed = (np.maximum(np.maximum(diff[:, 0], diff[:, 1]), diff[:, 2]) > 0.12) & unexplained_src
        c = float(changed.sum() / unexplained_src.sum())
    else:
        c = 1.0
    e_m, e_r = e.texture_energy(m), e.texture_energy(ring)
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
