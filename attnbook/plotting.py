"""Figures the book draws again and again: attention heatmaps with token labels,
pictures of masks, and an interactive attention explorer.

Every function accepts NumPy arrays, torch tensors (on any device, with or without
grad) or TensorFlow tensors. The matplotlib functions return the ``Axes`` or
``Figure`` they drew on, so a notebook can add to it or save it; :func:`explore`
returns a self-contained HTML view.

**Chinese and Japanese text.** Matplotlib's default font, DejaVu Sans, has no CJK
glyphs, and draws an empty box for each missing one. The functions here first add the
first installed font of :data:`CJK_FONTS` to matplotlib's ``font.family`` as a
*fallback* (:func:`use_cjk_font`): Latin text keeps DejaVu Sans, and only the glyphs
it lacks come from the CJK font. Without any such font, a figure whose text contains
CJK characters warns once, naming the package to install (``fonts-noto-cjk`` on
Debian/Ubuntu and Colab), instead of drawing boxes silently.
"""

from __future__ import annotations

import html
import itertools
import json
import re
import secrets
import warnings

import numpy as np

from . import _checks, _dispatch, _spec

# Preferred CJK fonts, first installed wins: Noto Sans CJK / Source Han Sans (Debian's
# and Ubuntu's fonts-noto-cjk, which also serves Colab after `apt-get install
# fonts-noto-cjk`; matplotlib reads the JP face of its .ttc collection, which covers
# Chinese too), then the usual Linux, macOS and Windows fonts.
CJK_FONTS = (
    "Noto Sans CJK SC",
    "Noto Sans CJK JP",
    "Noto Sans CJK TC",
    "Noto Sans CJK KR",
    "Noto Sans SC",
    "Source Han Sans SC",
    "Source Han Sans",
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "Droid Sans Fallback",
    "PingFang SC",
    "Hiragino Sans GB",
    "Heiti SC",
    "Microsoft YaHei",
    "SimHei",
    "Arial Unicode MS",
)
CJK_FONT_HINT = (
    "install a CJK font, e.g. `apt-get install fonts-noto-cjk` (Debian, "
    "Ubuntu, Colab) or "
    "`conda install -c conda-forge noto-cjk`, then restart the Python "
    "kernel"
)
# Han, kana, Hangul, CJK punctuation and full-width forms: the characters DejaVu Sans
# cannot draw.
_CJK = re.compile("[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef]")
_cjk_state = {"family": None, "looked": False, "warned": False}


def to_numpy(x):
    """A NumPy copy of an array of any of the three frameworks (bfloat16 becomes
    float32)."""
    fw = _dispatch.framework_of(x)
    if fw == "torch":
        x = x.detach().cpu()
        return (x.float() if str(x.dtype) == "torch.bfloat16" else x).numpy()
    if fw == "tensorflow":
        import tensorflow as tf

        return (tf.cast(x, tf.float32) if x.dtype == tf.bfloat16 else x).numpy()
    return np.asarray(x)


# --------------------------------------------------------------------------------------
# CJK text in figures
# --------------------------------------------------------------------------------------

_CJK_FILE = re.compile(
    r"cjk|sourcehan|wqy|droidsansfallback|notosanssc|pingfang|hiragino|msyh|simhei|arialuni",
    re.I,
)
_charmaps = {}


def cjk_font():
    """The family name of the first installed font of :data:`CJK_FONTS`, or ``None``
    when there is none.

    A font installed after matplotlib cached its font list (``apt-get install
    fonts-noto-cjk`` in a running Colab session, say) is found too: its files are
    added to matplotlib's font manager. Looked up once per process.
    """
    if not _cjk_state["looked"]:
        import os

        from matplotlib import font_manager

        def first():
            names = {f.name for f in font_manager.fontManager.ttflist}
            return next((family for family in CJK_FONTS if family in names), None)

        family = first()
        if family is None:
            for path in font_manager.findSystemFonts():
                if _CJK_FILE.search(os.path.basename(path)):
                    try:
                        font_manager.fontManager.addfont(path)
                    # a file FreeType cannot read
                    except (OSError, RuntimeError, ValueError):
                        continue
            family = first()
        _cjk_state.update(family=family, looked=True)
    return _cjk_state["family"]


def use_cjk_font():
    """Add the first installed CJK font to the end of matplotlib's ``font.family`` (a
    glyph fallback); idempotent.

    Returns the family name, or ``None`` when no font of :data:`CJK_FONTS` is
    installed (figures then draw boxes for CJK characters; the plotting functions of
    this module warn once when that happens). Text in Latin script
    is unaffected: matplotlib takes each glyph from the first font of the list that
        has it.
    """
    import matplotlib as mpl

    family = cjk_font()
    if family is not None and family not in mpl.rcParams["font.family"]:
        mpl.rcParams["font.family"] = [*mpl.rcParams["font.family"], family]
    return family


def missing_glyphs(text, families=None):
    """The characters of ``text`` (whitespace aside) that no font of matplotlib's
    ``font.family`` can draw.

    This asks the question the way matplotlib's renderer does: each family of the
        list (``families``, by default
    ``rcParams["font.family"]``, generic names such as ``"sans-serif"`` resolved
    through their rcParams list) is looked up with ``font_manager.findfont``, and a
    character is drawable when one of those font files maps it to a glyph. An empty
    list means the text renders without empty boxes.
    """
    import matplotlib as mpl
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    if families is None:
        families = mpl.rcParams["font.family"]
    elif isinstance(families, str):
        families = [families]
    covered = set()
    for family in families:
        try:
            # a bare string would be read as a fontconfig pattern
            prop = font_manager.FontProperties(family=[family])
            path = font_manager.findfont(prop, fallback_to_default=False)
        except ValueError:
            continue
        if path not in _charmaps:
            _charmaps[path] = frozenset(FT2Font(path).get_charmap())
        covered |= _charmaps[path]
    return sorted({c for c in text if not c.isspace() and ord(c) not in covered})


def _warn_without_cjk(*texts):
    """Warn once per process when a figure is about to draw CJK text and no CJK font
    is installed."""
    if _cjk_state["warned"] or not any(
        isinstance(t, str) and _CJK.search(t) for t in texts
    ):
        return
    if cjk_font() is None:
        _cjk_state["warned"] = True
        warnings.warn(
            f"this figure has Chinese or Japanese text, and no CJK font is "
            f"installed, so matplotlib "
            f"will draw an empty box for each such character: {CJK_FONT_HINT}",
            UserWarning,
            stacklevel=3,
        )


def _pyplot(*texts):
    """matplotlib.pyplot, with the CJK fallback font in place (and the one-time
    warning when ``texts`` need one)."""
    import matplotlib.pyplot as plt

    use_cjk_font()
    _warn_without_cjk(
        *(
            t
            for group in texts
            if group is not None
            for t in ([group] if isinstance(group, str) else group)
        )
    )
    return plt


def _matrix(x, name):
    a = to_numpy(x)
    if a.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D (Lq, Lk) array, got shape {a.shape}; "
            f"index batch and head first"
        )
    return a


def _real(name, a):
    """A NumPy array of real numbers (booleans count as 0/1) to draw; ``TypeError``
    for complex, text, objects."""
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be an array of real numbers, got dtype {a.dtype}")
    return a


def _limit(name, value):
    return None if value is None else _spec.check_real(name, value, "a number or None")


# Default figures are at most this wide and tall (inches): at matplotlib's 100 dpi, 720
# px, the width of the book's text column at 1280 px, so a figure is never shrunk to a
# fraction of its pixels on the page.
MAX_FIGURE_INCHES = 7.2


def _figsize(rows, cols, cell, pad_w, pad_h):
    """``cell`` inches per matrix entry plus the margins, with the cells shrunk to
    keep within the column."""
    cell = min(
        cell,
        (MAX_FIGURE_INCHES - pad_w) / max(cols, 1),
        (MAX_FIGURE_INCHES - pad_h) / max(rows, 1),
    )
    return cell * cols + pad_w, cell * rows + pad_h


def _label_axes(ax, rows, cols, x_labels, y_labels):
    for labels, n, axis, what in (
        (x_labels, cols, "x", "x_labels"),
        (y_labels, rows, "y", "y_labels"),
    ):
        if labels is None:
            continue
        if len(labels) != n:
            raise ValueError(
                f"{what} has {len(labels)} entries for an axis of length {n}"
            )
        getattr(ax, f"set_{axis}ticks")(range(n))
        getattr(ax, f"set_{axis}ticklabels")(labels, rotation=90 if axis == "x" else 0)


def heatmap(
    weights,
    x_labels=None,
    y_labels=None,
    *,
    ax=None,
    title=None,
    cmap="viridis",
    annotate=False,
    vmin=0.0,
    vmax=None,
    colorbar=True,
    xlabel="keys",
    ylabel="queries",
):
    """Draw one ``(Lq, Lk)`` matrix of attention weights; rows are queries, columns
    keys.

    ``annotate=True`` writes each weight in its cell (for small matrices). Returns
    the ``Axes``.
    """
    plt = _pyplot(x_labels, y_labels, title, xlabel, ylabel)

    a = _real("weights", _matrix(weights, "weights"))
    vmin, vmax = _limit("vmin", vmin), _limit("vmax", vmax)
    annotate, colorbar = (
        _spec.check_flag("annotate", annotate),
        _spec.check_flag("colorbar", colorbar),
    )
    if ax is None:
        _, ax = plt.subplots(
            figsize=_figsize(*a.shape, 0.45, 2.2, 1.4), constrained_layout=True
        )
    im = ax.imshow(
        a, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest"
    )
    _label_axes(ax, *a.shape, x_labels, y_labels)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if annotate:
        hi = np.nanmax(a) if a.size else 0
        for (i, j), value in np.ndenumerate(a):
            ax.text(
                j,
                i,
                f"{value:.2f}",
                ha="center",
                va="center",
                fontsize=8,
                color="black" if value > 0.6 * hi else "white",
            )
    if colorbar:
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return ax


def heatmaps(
    weights,
    titles=None,
    *,
    ncols=4,
    x_labels=None,
    y_labels=None,
    cmap="viridis",
    size=2.6,
    suptitle=None,
):
    """Draw a stack of matrices ``(N, Lq, Lk)`` (for example the heads of one layer)
    in a grid. Returns the Figure."""
    plt = _pyplot(x_labels, y_labels, titles, suptitle)

    stack = _real("weights", to_numpy(weights))
    if stack.ndim != 3 or stack.shape[0] == 0:
        raise ValueError(
            f"weights must be a 3-D (N, Lq, Lk) stack of at least one "
            f"matrix, got shape {stack.shape}"
        )
    ncols, size = _checks.positive_int("ncols", ncols), _checks.positive("size", size)
    n = stack.shape[0]
    if titles is not None and len(titles) != n:
        raise ValueError(f"titles has {len(titles)} entries for {n} matrices")
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(size * ncols, size * nrows),
        squeeze=False,
        constrained_layout=True,
    )
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.axis("off")
            continue
        heatmap(
            stack[i],
            x_labels,
            y_labels,
            ax=ax,
            cmap=cmap,
            colorbar=False,
            title=None if titles is None else titles[i],
            xlabel="",
            ylabel="",
        )
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def show_mask(mask, x_labels=None, y_labels=None, *, ax=None, title=None):
    """Picture a boolean mask: filled cells may attend (True), empty cells are masked
    (False). Returns the Axes."""
    from matplotlib.colors import ListedColormap

    plt = _pyplot(x_labels, y_labels, title)

    m = _matrix(mask, "mask")
    if m.dtype != bool:
        raise TypeError(
            f"mask must be boolean (True = may attend), got dtype {m.dtype}"
        )
    if ax is None:
        _, ax = plt.subplots(
            figsize=_figsize(*m.shape, 0.4, 1.6, 1.2), constrained_layout=True
        )
    ax.imshow(
        m,
        cmap=ListedColormap(["#f2f2f2", "#3b6ea5"]),
        vmin=0,
        vmax=1,
        aspect="auto",
        interpolation="nearest",
    )
    ax.set_xticks(np.arange(-0.5, m.shape[1]), minor=True)
    ax.set_yticks(np.arange(-0.5, m.shape[0]), minor=True)
    ax.grid(which="minor", color="white", linewidth=1)
    ax.tick_params(which="minor", length=0)
    _label_axes(ax, *m.shape, x_labels, y_labels)
    ax.set_xlabel("keys")
    ax.set_ylabel("queries")
    if title:
        ax.set_title(title)
    return ax


# --------------------------------------------------------------------------------------
# The interactive explorer
# --------------------------------------------------------------------------------------

# The most weights one explorer embeds (about 6 characters each in the page): beyond it,
# select layers and heads, or crop the tokens, first.
EXPLORE_MAX_WEIGHTS = 1_000_000
_explorer_ids = itertools.count()


def _token_list(name, tokens, n):
    if isinstance(tokens, str) or not hasattr(tokens, "__len__"):
        raise TypeError(
            f"{name} must be a list of strings, got {type(tokens).__name__}"
        )
    tokens = list(tokens)
    for t in tokens:
        if not isinstance(t, str):
            raise TypeError(f"{name} must hold strings, got {type(t).__name__} {t!r}")
    if len(tokens) != n:
        raise ValueError(f"{name} has {len(tokens)} tokens for an axis of length {n}")
    return tokens


def _names(name, names, n, default):
    if names is None:
        return [f"{default} {i}" for i in range(n)]
    return _token_list(name, names, n)


def _is_pair(tokens):
    return (
        isinstance(tokens, tuple | list)
        and len(tokens) == 2
        and all(not isinstance(t, str) and hasattr(t, "__len__") for t in tokens)
    )


def _number(x, precision):
    """``x`` rounded, as the shortest JSON number text: 0.25, 0.1, 0, 1."""
    text = f"{x:.{precision}f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


class AttentionExplorer:
    """An interactive view of attention weights, as one self-contained piece of HTML
    and JavaScript.

    Made by :func:`explore`. In Jupyter, Colab and on the book's pages it displays
    itself (``_repr_html_``); :meth:`to_html` returns the fragment and :meth:`save`
    writes a standalone page. The weights are embedded as JSON (``<script
    type="application/json">``) with ``precision`` decimals; :attr:`data` is that
    JSON as Python objects.
    """

    def __init__(self, meta, weights):
        p = meta["precision"]
        text = (
            json.dumps(meta, ensure_ascii=True, separators=(",", ":"))[:-1]
            + ',"weights":['
            + ",".join(
                "["
                + ",".join(
                    "["
                    + ",".join(
                        "[" + ",".join(_number(v, p) for v in row) + "]" for row in head
                    )
                    + "]"
                    for head in layer
                )
                + "]"
                for layer in weights.tolist()
            )
            + "]}"
        )
        # Inside <script>, only "</script" or "<!--" could end the element early: escape
        # every <, > and & (as \u003c ...), which JSON.parse reads back unchanged.
        # ensure_ascii keeps the page's encoding out of it.
        self._text = (
            text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
        )
        self.data = json.loads(self._text)  # exactly what the page's script reads
        # Unique on any page, even beside an output saved from an earlier session with
        # the same counter.
        self.id = f"attnbook-explorer-{next(_explorer_ids)}-{secrets.token_hex(4)}"

    @property
    def shape(self):
        """``(layers, heads, Lq, Lk)``."""
        d = self.data
        return len(d["layers"]), len(d["heads"]), len(d["queries"]), len(d["keys"])

    def __repr__(self):
        layers, heads, lq, lk = self.shape
        return f"<AttentionExplorer: {layers} layers x {heads} heads, {lq} queries x {lk} keys>"

    def to_html(self):
        """The HTML fragment: a ``<div>``, its data and its script (no external file,
        no CDN)."""
        eid = self.id
        title = html.escape(self.data["title"] or "")
        return (
            f'<div class="attnbook-explorer" id="{eid}" data-attnbook-explorer="1">'
            f"<style>{_EXPLORER_CSS}</style>"
            f'<div class="abx-title">{title}</div>'
            '<p class="abx-fallback">The interactive attention explorer needs '
            "JavaScript.</p>"
            f'<script type="application/json" class="abx-data" '
            f'id="{eid}-data">{self._text}</script>'
            f"<script>{_EXPLORER_JS.replace('__ID__', eid)}</script>"
            "</div>"
        )

    def _repr_html_(self):
        return self.to_html()

    def save(self, path):
        """Write a standalone HTML page (UTF-8) with the explorer."""
        title = html.escape(self.data["title"] or "attention explorer")
        page = (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{title}</title></head><body>{self.to_html()}</body></html>\n"
        )
        with open(path, "w", encoding="utf8") as f:
            f.write(page)
        return path


def explore(
    tokens, weights, *, layer_names=None, head_names=None, title=None, precision=3
):
    """An interactive explorer of attention weights for the web page or notebook:
    returns an :class:`AttentionExplorer`.

    ``weights`` is ``(L, H, Lq, Lk)`` (layers, heads, queries, keys) or ``(H, Lq,
    Lk)`` for one layer: attention weights, each in [0, 1]. ``tokens`` is one list of
    ``Lq == Lk`` strings (self-attention), or a pair ``(queries, keys)`` of lists for
    cross-attention. ``layer_names`` and ``head_names`` label the selectors (default
    ``"layer 0"``, ``"head 0"``, ...). Weights are embedded rounded to ``precision``
    decimals.

    The view has a layer and a head selector; the tokens as two columns, queries on
    the left and keys on the right, with a line from query to key for each weight
    (its opacity is the weight); hovering or focusing a query (click or Enter pins
    it) shows only its row, and shades each key by its weight, with the value in the
    key's tooltip; the selected head's matrix; and every head of the layer as a small
    matrix (click one to select it). It is
    plain HTML, CSS and JavaScript in one piece: it works on a static web site, in
    Jupyter and in Colab, offline, without widgets or a server. Token text is inserted
    as text, never as markup, so any token is safe.
    """
    w = _real("weights", to_numpy(weights))
    if w.ndim == 3:
        w = w[None]
    if w.ndim != 4:
        raise ValueError(
            f"weights must be (L, H, Lq, Lk) or (H, Lq, Lk), got shape {w.shape}"
        )
    n_layers, n_heads, lq, lk = w.shape
    if 0 in w.shape:
        raise ValueError(
            f"weights must have at least one layer, head, query and key, "
            f"got shape {w.shape}"
        )
    if w.size > EXPLORE_MAX_WEIGHTS:
        raise ValueError(
            f"weights has {w.size:,} entries, more than one page should "
            f"embed ({EXPLORE_MAX_WEIGHTS:,});"
            " select layers and heads, or crop the tokens, first"
        )
    w = w.astype(np.float64)
    if not np.isfinite(w).all():
        raise ValueError("weights must be finite (no NaN or infinity)")
    if w.min() < -1e-6 or w.max() > 1 + 1e-6:
        raise ValueError(
            f"weights must be attention weights in [0, 1], got values in "
            f"[{w.min():.3g}, {w.max():.3g}]"
        )
    precision = _checks.positive_int("precision", precision)
    if precision > 8:
        raise ValueError(f"precision must be at most 8 decimals, got {precision}")
    if _is_pair(tokens):
        queries, keys = (
            _token_list("tokens[0] (queries)", tokens[0], lq),
            _token_list("tokens[1] (keys)", tokens[1], lk),
        )
    else:
        if lq != lk:
            raise ValueError(
                f"weights has {lq} queries and {lk} keys: give tokens as a "
                f"(queries, keys) pair"
            )
        queries = keys = _token_list("tokens", tokens, lq)
    if title is not None and not isinstance(title, str):
        raise TypeError(f"title must be a string or None, got {type(title).__name__}")
    data = {
        "version": 1,
        "title": title,
        "precision": precision,
        "layers": _names("layer_names", layer_names, n_layers, "layer"),
        "heads": _names("head_names", head_names, n_heads, "head"),
        "queries": queries,
        "keys": keys,
    }
    return AttentionExplorer(data, np.clip(w, 0.0, 1.0))


_EXPLORER_CSS = """
.attnbook-explorer{--abx-c:33,102,172;max-width:100%;overflow-x:auto;font-size:0.85rem;line-height:1.3;
  margin:0.5rem 0 1rem}
.attnbook-explorer .abx-title{font-weight:600;margin-bottom:0.25rem}
.attnbook-explorer .abx-controls{display:flex;flex-wrap:wrap;gap:0.5rem 1rem;align-items:center;margin-bottom:0.5rem}
.attnbook-explorer select{font:inherit;padding:0.1rem 0.25rem;color:inherit;background:transparent;
  border:1px solid rgba(127,127,127,0.6);border-radius:0.2rem}
.attnbook-explorer select option{color:#000;background:#fff}
.attnbook-explorer .abx-status{min-height:1.3em;opacity:0.85}
.attnbook-explorer .abx-main{display:flex;flex-wrap:wrap;gap:1rem;align-items:flex-start}
.attnbook-explorer .abx-tokens{display:flex;align-items:flex-start}
.attnbook-explorer .abx-col{display:flex;flex-direction:column}
.attnbook-explorer .abx-queries{align-items:flex-end}
.attnbook-explorer .abx-tok{display:block;height:20px;line-height:20px;padding:0 0.3rem;max-width:9rem;
  overflow:hidden;text-overflow:ellipsis;white-space:pre;cursor:default;border-radius:0.2rem;
  font-family:var(--pst-font-family-monospace,monospace)}
.attnbook-explorer .abx-q{cursor:pointer}
.attnbook-explorer .abx-val{opacity:0.75;min-width:2.6rem;font-size:0.75rem}
.attnbook-explorer .abx-q.abx-active{outline:2px solid rgb(var(--abx-c));outline-offset:-2px}
.attnbook-explorer .abx-q.abx-pinned{background:rgba(var(--abx-c),0.25)}
.attnbook-explorer svg.abx-lines{flex:none;display:block}
.attnbook-explorer .abx-matrix canvas,.attnbook-explorer .abx-heads canvas{display:block;image-rendering:pixelated;
  cursor:pointer}
.attnbook-explorer .abx-heads{display:flex;flex-wrap:wrap;gap:0.5rem;margin-top:0.75rem}
.attnbook-explorer .abx-head{display:flex;flex-direction:column;align-items:center;font-size:0.75rem;
  padding:2px;border:2px solid transparent;border-radius:0.2rem;background:none;color:inherit;font-family:inherit}
.attnbook-explorer .abx-head.abx-selected{border-color:rgb(var(--abx-c))}
.attnbook-explorer .abx-caption{font-size:0.75rem;opacity:0.85;margin-top:0.25rem;max-width:20rem}
"""

# One closure per explorer; __ID__ is its element id. Text goes in with textContent,
# never innerHTML.
_EXPLORER_JS = r"""
(function () {
  "use strict";
  var root = document.getElementById("__ID__");
  if (!root || root.getAttribute("data-ready")) { return; }
  root.setAttribute("data-ready", "1");
  var data = JSON.parse(document.getElementById("__ID__-data").textContent);
  var W = data.weights, Q = data.queries, K = data.keys, ROW = 20, NS = "http://www.w3.org/2000/svg";
  var state = {layer: 0, head: 0, hover: null, pinned: null};
  var VIRIDIS = [[68, 1, 84], [72, 40, 120], [62, 74, 137], [49, 104, 142], [38, 130, 142], [31, 158, 137],
                 [53, 183, 121], [109, 205, 89], [180, 222, 44], [253, 231, 37]];
  function color(t) {
    t = Math.max(0, Math.min(1, t)) * (VIRIDIS.length - 1);
    var i = Math.min(Math.floor(t), VIRIDIS.length - 2), f = t - i, a = VIRIDIS[i], b = VIRIDIS[i + 1];
    return "rgb(" + [0, 1, 2].map(function (c) { return Math.round(a[c] + f * (b[c] - a[c])); }).join(",") + ")";
  }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined) { e.textContent = text; }
    return e;
  }
  root.querySelector(".abx-fallback").remove();
  var controls = el("div", "abx-controls");
  function selector(label, names, cls) {
    var wrap = el("label", null, label + " "), sel = el("select", cls);
    names.forEach(function (n, i) { var o = el("option", null, n); o.value = String(i); sel.appendChild(o); });
    wrap.appendChild(sel); controls.appendChild(wrap);
    return sel;
  }
  var layerSel = selector("layer", data.layers, "abx-layer"), headSel = selector("head", data.heads, "abx-head-select");
  var status = el("span", "abx-status"); status.setAttribute("aria-live", "polite"); controls.appendChild(status);
  root.appendChild(controls);
  var main = el("div", "abx-main"), tokens = el("div", "abx-tokens");
  var qcol = el("div", "abx-col abx-queries"), kcol = el("div", "abx-col abx-keys");
  var height = Math.max(Q.length, K.length) * ROW, gap = 90;
  var svg = document.createElementNS(NS, "svg");
  svg.setAttribute("class", "abx-lines"); svg.setAttribute("width", gap); svg.setAttribute("height", height);
  svg.setAttribute("aria-hidden", "true");
  var qEls = Q.map(function (t, i) {
    var e = el("span", "abx-tok abx-q", t); e.title = t; e.tabIndex = 0; e.setAttribute("data-index", i);
    e.setAttribute("role", "button");
    e.addEventListener("mouseenter", function () { state.hover = i; render(); });
    e.addEventListener("mouseleave", function () { state.hover = null; render(); });
    e.addEventListener("focus", function () { state.hover = i; render(); });
    e.addEventListener("blur", function () { state.hover = null; render(); });
    e.addEventListener("click", function () { state.pinned = state.pinned === i ? null : i; render(); });
    e.addEventListener("keydown", function (ev) {
      if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); state.pinned = state.pinned === i ? null : i; render(); }
    });
    qcol.appendChild(e); return e;
  });
  var vcol = el("div", "abx-col abx-values");
  var kEls = K.map(function (t, j) {
    var e = el("span", "abx-tok abx-k", t); e.setAttribute("data-index", j); kcol.appendChild(e); return e;
  });
  var vEls = K.map(function () { var e = el("span", "abx-tok abx-val"); vcol.appendChild(e); return e; });
  [qcol, svg, kcol, vcol].forEach(function (c) { tokens.appendChild(c); });
  main.appendChild(tokens);
  var rgb = getComputedStyle(root).getPropertyValue("--abx-c").trim() || "33,102,172";
  var side = el("div", "abx-matrix"), cell = Math.max(4, Math.min(14, Math.floor(280 / Math.max(Q.length, K.length))));
  var canvas = el("canvas"); canvas.width = K.length * cell; canvas.height = Q.length * cell;
  var caption = el("div", "abx-caption", "rows: queries, columns: keys; click a row to pin it");
  side.appendChild(canvas); side.appendChild(caption); main.appendChild(side); root.appendChild(main);
  canvas.addEventListener("click", function (ev) {
    var r = canvas.getBoundingClientRect(), i = Math.floor((ev.clientY - r.top) / r.height * Q.length);
    if (i >= 0 && i < Q.length) { state.pinned = state.pinned === i ? null : i; render(); }
  });
  var heads = el("div", "abx-heads"), small = Math.max(2, Math.min(5, Math.floor(60 / Math.max(Q.length, K.length))));
  var headEls = data.heads.map(function (name, h) {
    var b = el("button", "abx-head"); b.type = "button"; b.setAttribute("data-head", h);
    var c = el("canvas"); c.width = K.length * small; c.height = Q.length * small;
    b.appendChild(c); b.appendChild(el("span", null, name));
    b.addEventListener("click", function () { state.head = h; headSel.value = String(h); render(); });
    heads.appendChild(b); return [b, c];
  });
  root.appendChild(heads);
  layerSel.addEventListener("change", function () { state.layer = Number(layerSel.value); render(); });
  headSel.addEventListener("change", function () { state.head = Number(headSel.value); render(); });
  function draw(c, m, size, row) {
    var ctx = c.getContext("2d"), max = 0;
    m.forEach(function (r) { r.forEach(function (v) { if (v > max) { max = v; } }); });
    m.forEach(function (r, i) { r.forEach(function (v, j) {
      ctx.fillStyle = color(max > 0 ? v / max : 0); ctx.fillRect(j * size, i * size, size, size);
    }); });
    if (row !== null && row !== undefined) {
      ctx.strokeStyle = "#ff3d00"; ctx.lineWidth = 2; ctx.strokeRect(1, row * size + 1, c.width - 2, size - 2);
    }
  }
  function line(i, j, w) {
    var l = document.createElementNS(NS, "line");
    l.setAttribute("x1", 2); l.setAttribute("y1", i * ROW + ROW / 2);
    l.setAttribute("x2", gap - 2); l.setAttribute("y2", j * ROW + ROW / 2);
    l.setAttribute("stroke", "rgb(" + rgb + ")");
    l.setAttribute("stroke-width", 2); l.setAttribute("stroke-opacity", w);
    svg.appendChild(l);
  }
  function render() {
    var m = W[state.layer][state.head], q = state.hover !== null ? state.hover : state.pinned;
    while (svg.firstChild) { svg.removeChild(svg.firstChild); }
    qEls.forEach(function (e, i) {
      e.classList.toggle("abx-active", i === q); e.classList.toggle("abx-pinned", i === state.pinned);
    });
    if (q === null) {
      if (Q.length * K.length <= 4096) {  // every weight as a faint line; beyond that only a hovered row
        m.forEach(function (r, i) { r.forEach(function (v, j) { if (v > 0.01) { line(i, j, v * 0.6); } }); });
      }
      kEls.forEach(function (e, j) { e.style.background = ""; e.removeAttribute("data-weight"); e.title = K[j]; });
      vEls.forEach(function (e) { e.textContent = ""; });
      status.textContent = data.layers[state.layer] + ", " + data.heads[state.head] + ": hover or click a query";
    } else {
      var row = m[q], best = 0;
      row.forEach(function (v, j) { line(q, j, v); if (v > row[best]) { best = j; } });
      kEls.forEach(function (e, j) {
        e.style.background = "rgba(" + rgb + "," + row[j] + ")";
        e.setAttribute("data-weight", String(row[j])); e.title = K[j] + ": " + row[j];
        vEls[j].textContent = row[j].toFixed(Math.min(2, data.precision));
      });
      status.textContent = "\u201c" + Q[q] + "\u201d attends most to \u201c" + K[best] + "\u201d (" + row[best] + ")";
    }
    draw(canvas, m, cell, q);
    headEls.forEach(function (pair, h) {
      pair[0].classList.toggle("abx-selected", h === state.head);
      draw(pair[1], W[state.layer][h], small, null);
    });
    root.setAttribute("data-layer", state.layer); root.setAttribute("data-head", state.head);
    root.setAttribute("data-query", q === null ? "" : q);
  }
  render();
})();
"""
