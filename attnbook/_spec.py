"""Argument checks, written once for all three backends.

A backend turns each array argument into an :class:`Info` (shape, dtype name, device)
and calls the checks here, so the three frameworks raise the same exception type with
the same message for the same mistake. Nothing here imports a framework.
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")
REDUCED_DTYPES = ("float16", "bfloat16")
MHA_REQUIRED = ("w_q", "w_k", "w_v", "w_o")
MHA_OPTIONAL = ("b_q", "b_k", "b_v", "b_o")


class Info(NamedTuple):
    """What the checks need to know about one array."""

    shape: tuple
    dtype: str
    device: str | None = None


def type_error(name, expected, value):
    return TypeError(
        f"{name} must be a {expected}, got "
        f"{type(value).__module__}.{type(value).__qualname__}"
    )


def broadcast_shapes(named):
    """Broadcast shapes given as ``{name: shape}``; ``ValueError`` naming every shape
    if they do not broadcast.

    A size of ``None`` (not known yet inside a TensorFlow graph) broadcasts with 1
    and with any known size; an axis whose only sizes are 1 and ``None`` comes out
    ``None``.
    """
    shapes = list(named.values())
    ndim = max((len(s) for s in shapes), default=0)
    out = []
    for axis in range(-ndim, 0):
        present = {s[axis] for s in shapes if len(s) >= -axis}
        sizes = present - {1, None}
        if len(sizes) > 1:
            listing = ", ".join(f"{n} {tuple(s)}" for n, s in named.items())
            raise ValueError(f"the batch axes of {listing} do not broadcast")
        out.append(sizes.pop() if sizes else None if None in present else 1)
    return tuple(out)


def _differ(a, b):
    """Two sizes that are known and unequal. ``None`` (a TensorFlow graph-mode size
    not known yet) matches any."""
    return a is not None and b is not None and a != b


def _fits(shape, target):
    """True when ``shape`` broadcasts to ``target`` without changing it."""
    if len(shape) > len(target):
        return False
    return all(
        s == 1 or not _differ(s, t)
        for s, t in zip(shape[::-1], target[::-1], strict=False)
    )


def check_float(name, info):
    if info.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{name} must be a floating-point array (float16, bfloat16, "
            f"float32 or float64), "
            f"got dtype {info.dtype}"
        )


def check_rank(name, info, rank, layout, exact=False):
    ok = len(info.shape) == rank if exact else len(info.shape) >= rank
    if not ok:
        need = f"rank {rank}" if exact else f"rank >= {rank}"
        raise ValueError(
            f"{name} must have {need} {layout}, got shape {tuple(info.shape)}"
        )


def check_same_dtype(infos):
    dtypes = {i.dtype for i in infos.values() if i is not None}
    if len(dtypes) > 1:
        listing = ", ".join(f"{n} {i.dtype}" for n, i in infos.items() if i is not None)
        raise TypeError(f"arrays must share one dtype, got {listing}")


def check_devices(infos):
    devices = {
        i.device for i in infos.values() if i is not None and i.device is not None
    }
    if len(devices) > 1:
        listing = ", ".join(
            f"{n} on {i.device}" for n, i in infos.items() if i is not None
        )
        raise ValueError(f"arrays must be on one device, got {listing}")


def check_mask(info, target, what="the score shape"):
    if info is None:
        return
    if info.dtype != "bool":
        raise TypeError(
            f"mask must be boolean (True = may attend), got dtype "
            f"{info.dtype}; "
            "convert it with mask_from_keep, mask_from_ignore or "
            "mask_from_additive"
        )
    if not _fits(tuple(info.shape), target):
        raise ValueError(
            f"mask of shape {tuple(info.shape)} does not broadcast to {what} {target}"
        )


def check_bias(info, target, what="the score shape"):
    if info is None:
        return
    if info.dtype not in FLOAT_DTYPES:
        raise TypeError(f"bias must be a floating-point array, got dtype {info.dtype}")
    if not _fits(tuple(info.shape), target):
        raise ValueError(
            f"bias of shape {tuple(info.shape)} does not broadcast to {what} {target}"
        )


# Sizes, counts and seeds must fit a signed 64-bit integer, the widest index type torch
# and TensorFlow have: a larger Python int would otherwise fail deep inside a framework
# with a message that names no argument.
INDEX_MAX = 2**63 - 1

# The largest finite value and the smallest positive (subnormal) value of each compute
# dtype, for checking that a scalar survives the conversion to the dtype it is applied
# in.
_FINITE = {
    "float16": (65504.0, 2.0**-24),
    "bfloat16": (3.3895313892515355e38, 2.0**-133),
    "float32": (3.4028234663852886e38, 2.0**-149),
    "float64": (1.7976931348623157e308, 5e-324),
}


def _is_flag(value):
    return (
        isinstance(value, bool)
        or type(value).__name__ == "bool"
        and type(value).__module__ == "numpy"
    )


def check_flag(name, value):
    """``True``/``False`` (a NumPy bool too); returns a Python bool."""
    if not _is_flag(value):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _is_integer(value):
    return isinstance(value, numbers.Integral) and not _is_flag(value)


def _is_real(value):
    return isinstance(value, numbers.Real) and not _is_flag(value)


def check_integer(name, value, *, least=0, what="a non-negative integer"):
    """An integer (a NumPy integer too) in ``[least, 2**63 - 1]``; returns a Python
    int."""
    if not _is_integer(value):
        raise TypeError(f"{name} must be {what}, got {value!r}")
    value = int(value)
    if value < least:
        raise ValueError(f"{name} must be {what}, got {value!r}")
    if value > INDEX_MAX:
        raise ValueError(f"{name} must be {what} of at most 2**63 - 1, got {value!r}")
    return value


def check_real(name, value, what):
    """A real number (a NumPy scalar too) as a Python float; ``ValueError`` for one
    that no float can hold."""
    if not _is_real(value):
        raise TypeError(f"{name} must be {what}, got {value!r}")
    try:
        return float(value)
    except OverflowError:
        raise ValueError(
            f"{name} must be {what}, got an integer of "
            f"{value.bit_length()} bits, too large for a "
            "float"
        ) from None


def check_scale(scale, d, dtype="float32"):
    """The scale to use: ``1/sqrt(d)`` for ``None`` (``None`` when ``d`` is not known
    yet, inside a TensorFlow graph), else a positive finite float that the compute
    dtype of ``dtype`` holds without becoming 0 or inf."""
    if scale is None:
        if d is None:
            return None
        return 1.0 / math.sqrt(d) if d > 0 else 1.0
    value = check_real("scale", scale, "a positive finite number or None")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"scale must be a positive finite number, got {scale!r}")
    compute = compute_dtype(dtype) if dtype in _FINITE else "float32"
    largest, smallest = _FINITE[compute]
    if value > largest or value < smallest:
        raise ValueError(
            f"scale = {scale!r} is not representable in {compute}, the "
            f"dtype the scores are "
            f"computed in (it would become "
            f"{'inf' if value > largest else '0'})"
        )
    return value


def check_dropout(dropout, seed):
    """Returns ``(dropout, seed)`` as a Python float in ``[0, 1)`` and a Python int
    in ``[0, 2**63)`` or None."""
    p = check_real("dropout", dropout, "a number in [0, 1)")
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    if seed is not None:
        seed = check_integer("seed", seed, what="a non-negative integer or None")
    return p, seed


def check_threshold(threshold):
    """A threshold for ``mask_from_additive``: any real number but NaN (compared in
    float64, so that it is exact)."""
    value = check_real("threshold", threshold, "a number")
    if math.isnan(value):
        raise ValueError("threshold must be a number, got nan")
    return value


def check_softmax(x, axis, mask):
    """Validate softmax arguments; returns the non-negative axis."""
    check_float("x", x)
    if not _is_integer(axis):
        raise TypeError(f"axis must be an integer, got {axis!r}")
    axis = int(axis)
    ndim = len(x.shape)
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} is out of range for x of shape {tuple(x.shape)}")
    check_mask(mask, tuple(x.shape), what="the shape of x")
    return axis % ndim


ALIGNS = ("top_left", "bottom_right")


class Plan(NamedTuple):
    """Shapes and options an attention call works with once its arguments are
    checked."""

    # broadcast batch axes; a size is None where a TensorFlow graph does not know it
    batch: tuple
    lq: int | None
    lk: int | None
    d: int | None
    dv: int | None
    scale: float | None  # None: 1/sqrt(d) with d known only when the graph runs
    dropout: float = 0.0
    seed: int | None = None
    causal: bool = False
    # query i sits at position i + offset (0, or Lk - Lq bottom-right)
    offset: int | None = 0
    # query i may see keys p_i - left ..= p_i + right (None: unbounded); causal
    left: int | None = None
    right: int | None = None  #   is folded in as right <= 0
    groups: int = 1  # query heads per key/value head (enable_gqa), 1 without grouping
    softcap: float | None = None

    @property
    def score_shape(self):
        return self.batch + (self.lq, self.lk)

    @property
    def structured(self):
        """True when causal or a window masks some keys (a mask the kernels build
        from positions)."""
        return self.left is not None or self.right is not None


def check_align(align):
    if not isinstance(align, str):
        raise TypeError(f"align must be 'top_left' or 'bottom_right', got {align!r}")
    if align not in ALIGNS:
        raise ValueError(f"align must be 'top_left' or 'bottom_right', got {align!r}")
    return align


def check_window(window):
    """``None`` or ``(left, right)`` with each side a non-negative integer or None;
    returns a tuple."""
    if window is None:
        return None, None
    if not isinstance(window, (tuple, list)) or len(window) != 2:
        raise TypeError(
            f"window must be None or a pair (left, right) of non-negative "
            f"integers or None, got "
            f"{window!r}"
        )
    return tuple(
        None
        if w is None
        else check_integer(f"window[{i}]", w, what="a non-negative integer or None")
        for i, w in enumerate(window)
    )


def check_softcap(softcap, dtype):
    if softcap is None:
        return None
    value = check_real("softcap", softcap, "a positive finite number or None")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(
            f"softcap must be a positive finite number or None, got {softcap!r}"
        )
    compute = compute_dtype(dtype) if dtype in _FINITE else "float32"
    largest, smallest = _FINITE[compute]
    if value > largest or value < smallest:
        raise ValueError(
            f"softcap = {softcap!r} is not representable in {compute}, the "
            f"dtype the scores are "
            "computed in"
        )
    return value


def check_attention(
    query,
    key,
    value,
    mask=None,
    bias=None,
    *,
    causal=False,
    return_weights=False,
    same_d=True,
    scale=None,
    dropout=0.0,
    seed=None,
    extra=None,
    window=None,
    align="top_left",
    enable_gqa=False,
    softcap=None,
    sink=None,
):
    """Checks common to every attention function. ``extra`` holds further arrays that
    must share dtype/device."""
    rank = 3 if enable_gqa is True else 2
    for name, info in (("query", query), ("key", key), ("value", value)):
        check_rank(name, info, rank, "(..., H, L, d)" if rank == 3 else "(..., L, d)")
        check_float(name, info)
    arrays = {"query": query, "key": key, "value": value, **(extra or {})}
    check_same_dtype(arrays)
    check_devices({**arrays, "mask": mask, "bias": bias, "sink": sink})
    causal = check_flag("causal", causal)
    check_flag("return_weights", return_weights)
    enable_gqa = check_flag("enable_gqa", enable_gqa)
    align = check_align(align)
    left, right = check_window(window)
    if same_d and _differ(query.shape[-1], key.shape[-1]):
        raise ValueError(
            f"query and key must have the same feature size d, got query "
            f"{tuple(query.shape)} "
            f"and key {tuple(key.shape)}"
        )
    if _differ(key.shape[-2], value.shape[-2]):
        raise ValueError(
            f"key and value must have the same length Lk, got key "
            f"{tuple(key.shape)} "
            f"and value {tuple(value.shape)}"
        )
    groups = 1
    if enable_gqa:
        heads, kv_heads = query.shape[-3], key.shape[-3]
        if _differ(kv_heads, value.shape[-3]):
            raise ValueError(
                f"key and value must have the same number of heads Hkv on "
                f"axis -3, got key "
                f"{tuple(key.shape)} and value {tuple(value.shape)}"
            )
        if heads is None or kv_heads is None:
            raise ValueError(
                f"enable_gqa needs the head counts H and Hkv (axis -3) to "
                f"be known when a "
                f"tf.function is traced, got query {tuple(query.shape)} "
                f"and key {tuple(key.shape)}"
            )
        if kv_heads == 0 or heads % kv_heads:
            raise ValueError(
                f"enable_gqa needs the query heads H = {heads} (axis -3 of "
                f"query) to be a multiple of "
                f"the key/value heads Hkv = {kv_heads} (axis -3 of key), "
                f"got query "
                f"{tuple(query.shape)} and key {tuple(key.shape)}"
            )
        groups = heads // kv_heads
        lead = broadcast_shapes(
            {
                "query": query.shape[:-3],
                "key": key.shape[:-3],
                "value": value.shape[:-3],
            }
        )
        batch = lead + (heads,)
    else:
        try:
            batch = broadcast_shapes(
                {
                    "query": query.shape[:-2],
                    "key": key.shape[:-2],
                    "value": value.shape[:-2],
                }
            )
        except ValueError as err:
            h, hkv = (
                (query.shape[-3], key.shape[-3])
                if min(len(query.shape), len(key.shape)) >= 3
                else (0, 0)
            )
            if h and hkv and h % hkv == 0 and hkv < h:
                raise ValueError(
                    f"{err}; for grouped-query attention (H query heads "
                    f"sharing Hkv key/value heads on "
                    "axis -3) pass enable_gqa=True"
                ) from None
            raise
    lq, lk = query.shape[-2], key.shape[-2]
    offset = (
        0 if align == "top_left" else (None if lq is None or lk is None else lk - lq)
    )
    if causal:
        right = 0 if right is None else min(right, 0)
    plan = Plan(
        batch,
        lq,
        lk,
        query.shape[-1],
        value.shape[-1],
        check_scale(scale, query.shape[-1], query.dtype),
        *check_dropout(dropout, seed),
        causal,
        offset,
        left,
        right,
        groups,
        check_softcap(softcap, query.dtype),
    )
    check_mask(mask, plan.score_shape)
    check_bias(bias, plan.score_shape)
    check_sink(sink, plan.batch + (lq,))
    return plan


def check_sink(info, target):
    if info is None:
        return
    if info.dtype not in FLOAT_DTYPES:
        raise TypeError(f"sink must be a floating-point array, got dtype {info.dtype}")
    if not _fits(tuple(info.shape), target):
        raise ValueError(
            f"sink of shape {tuple(info.shape)} does not broadcast to the "
            f"row shape (..., Lq) = "
            f"{target}; one sink per head is (H, 1)"
        )


def key_range(plan, rows):
    """``(lo, hi)``: the keys that causal/window let at least one query of ``rows =
    (start, stop)`` see.

    Query ``i`` sees keys ``i + offset - left ..= i + offset + right``; an empty
    range has ``lo == hi``."""
    lo, hi = 0, plan.lk
    if plan.left is not None:
        lo = max(0, rows[0] + plan.offset - plan.left)
    if plan.right is not None:
        hi = min(plan.lk, rows[1] - 1 + plan.offset + plan.right + 1)
    return lo, max(lo, hi)


def all_visible(plan, rows, cols):
    """True when causal/window let every query of ``rows`` see every key of ``cols``
    (the tile needs no mask)."""
    if plan.right is not None and cols[1] - 1 > rows[0] + plan.offset + plan.right:
        return False
    if plan.left is not None and cols[0] < rows[1] - 1 + plan.offset - plan.left:
        return False
    return True


def key_tiles(plan, rows, block_k):
    """The key tiles ``[(start, stop), ...]`` a query block ``rows`` computes: the
    keys of :func:`key_range`, cut where causal/window stop being visible to every
    row of the block, so that the tiles in the middle need no mask and only the
    (narrow) edges do; each piece is cut again into tiles of at most ``block_k``
    keys."""
    lo, hi = key_range(plan, rows)
    cuts = [lo, hi]
    # Every row sees keys rows[1]-1+offset-left ..= rows[0]+offset+right. The cuts sit
    # one key further out on each side, so that with bq = bk the masked edges are whole
    # squares on the diagonal (the tiles of FlashAttention).
    if plan.left is not None:
        cuts.append(rows[1] + plan.offset - plan.left)
    if plan.right is not None:
        cuts.append(rows[0] + plan.offset + plan.right)
    edges = sorted({c for c in cuts if lo <= c <= hi})
    return [
        (a + s, min(a + s + block_k, b))
        for a, b in zip(edges, edges[1:], strict=False)
        for s in range(0, b - a, block_k)
    ]


def grouped_shape(shape, axis, groups):
    """The shape of an array broadcastable to ``(..., H, ...)`` (the head axis at
    ``axis`` counted from the end) once the heads are split into ``(Hkv, groups)``: a
    head axis of size H becomes ``(H // groups, groups)``, one of size 1 (or absent)
    ``(1, 1)`` (or stays absent)."""
    shape = tuple(shape)
    if len(shape) < -axis:
        return shape
    at = len(shape) + axis
    head = shape[at]
    split = (1, 1) if head == 1 else (head // groups, groups)
    return shape[:at] + split + shape[at + 1 :]


def check_block_size(block_size, default):
    if block_size is None:
        return default
    return check_integer(
        "block_size", block_size, least=1, what="a positive integer or None"
    )


def block_slices(length, size):
    """``[(start, stop), ...]`` covering ``range(length)`` in tiles of ``size``."""
    return [(s, min(s + size, length)) for s in range(0, length, size)]


def flash_block_q(budget, plan, block_k, most=None, least=64):
    """Query rows of a default flash tile: ``budget`` scores shared by every batch
    and head axis computed at once, over ``min(Lk, block_k)`` keys; at most ``most``
    rows (None: as many as fit) and at least ``least``."""
    # an axis a TensorFlow graph does not know counts as 1
    batch = math.prod(b or 1 for b in plan.batch)
    rows = budget // (max(1, batch) * min(max(plan.lk, 1), block_k))
    return max(least, rows if most is None else min(most, rows))


def tile(x, rows, cols):
    """The ``(..., rows, cols)`` tile of a mask or bias ``x`` broadcastable to the
    scores; its size-1 (broadcast) axes and the axes it lacks stay whole. Only
    indexing and ``.shape`` are used, so it serves every twin."""
    if x is None or len(x.shape) == 0:
        return x
    cut = [
        slice(None) if n == 1 else slice(*r)
        for n, r in zip(x.shape[-2:], (rows, cols)[-len(x.shape) :], strict=False)
    ]
    return x[(...,) + tuple(cut)]


def check_additive(query, key, w_query, w_key, v):
    for name, info in (("w_query", w_query), ("w_key", w_key)):
        check_rank(name, info, 2, "(d, da)", exact=True)
    check_rank("v", v, 1, "(da,)", exact=True)
    if _differ(w_query.shape[0], query.shape[-1]):
        raise ValueError(
            f"w_query must have shape (dq, da) with dq = {query.shape[-1]} "
            f"from query "
            f"{tuple(query.shape)}, got {tuple(w_query.shape)}"
        )
    if _differ(w_key.shape[0], key.shape[-1]):
        raise ValueError(
            f"w_key must have shape (dk, da) with dk = {key.shape[-1]} "
            f"from key {tuple(key.shape)}, "
            f"got {tuple(w_key.shape)}"
        )
    if not w_query.shape[1] == w_key.shape[1] == v.shape[0]:
        raise ValueError(
            f"w_query {tuple(w_query.shape)}, w_key {tuple(w_key.shape)} "
            f"and v {tuple(v.shape)} "
            "must share the hidden size da"
        )


def check_bilinear(query, key, w):
    check_rank("w", w, 2, "(dq, dk)", exact=True)
    want = (query.shape[-1], key.shape[-1])
    if _differ(w.shape[0], want[0]) or _differ(w.shape[1], want[1]):
        raise ValueError(
            f"w must have shape (dq, dk) = {want} for query "
            f"{tuple(query.shape)} and key "
            f"{tuple(key.shape)}, got {tuple(w.shape)}"
        )


def check_params_mapping(params):
    """``params`` must be a mapping with exactly the known keys; returns the names
    present."""
    if not hasattr(params, "keys") or not hasattr(params, "__getitem__"):
        raise TypeError(
            f"params must be a mapping of parameter names to arrays, got "
            f"{type(params).__name__}"
        )
    names = set(params.keys())
    missing = [k for k in MHA_REQUIRED if k not in names]
    if missing:
        raise ValueError(
            f"params is missing {', '.join(missing)}; it needs "
            f"{', '.join(MHA_REQUIRED)} "
            f"and may have {', '.join(MHA_OPTIONAL)}"
        )
    unknown = sorted(names - set(MHA_REQUIRED) - set(MHA_OPTIONAL))
    if unknown:
        raise ValueError(
            f"params has unknown keys {', '.join(map(str, unknown))}; "
            f"allowed are "
            f"{', '.join(MHA_REQUIRED + MHA_OPTIONAL)}"
        )
    return [k for k in MHA_REQUIRED + MHA_OPTIONAL if k in names]


class HeadPlan(NamedTuple):
    """What multi-head attention works with once its arguments are checked."""

    width: int  # D, the model width of the queries (H * d)
    out: int  # Do, the output width
    heads: int  # H
    kv_heads: int  # Hkv
    rope: float | None  # the RoPE base, or None


def check_multi_head(
    query,
    key,
    value,
    params,
    num_heads,
    mask=None,
    bias=None,
    *,
    num_kv_heads=None,
    causal=False,
    return_weights=False,
    dropout=0.0,
    seed=None,
    rope=None,
):
    """Checks for multi_head_attention; ``params`` is ``{name: Info}``. Returns a
    :class:`HeadPlan`."""
    for name, info, layout in (
        ("query", query, "(B, Lq, Dq)"),
        ("key", key, "(B, Lk, Dk)"),
        ("value", value, "(B, Lk, Dv)"),
    ):
        check_rank(name, info, 3, layout, exact=True)
    num_heads = check_integer(
        "num_heads", num_heads, least=1, what="a positive integer"
    )
    kv_heads = (
        num_heads
        if num_kv_heads is None
        else check_integer(
            "num_kv_heads", num_kv_heads, least=1, what="a positive integer or None"
        )
    )
    if num_heads % kv_heads:
        raise ValueError(
            f"num_kv_heads = {kv_heads} must divide num_heads = {num_heads}"
        )
    for name in MHA_REQUIRED:
        check_rank(f"params['{name}']", params[name], 2, "(in, out)", exact=True)
    for name in MHA_OPTIONAL:
        if name in params:
            check_rank(f"params['{name}']", params[name], 1, "(out,)", exact=True)
    width = params["w_q"].shape[1]
    if width % num_heads:
        raise ValueError(
            f"num_heads = {num_heads} must divide the model width D = {width}"
        )
    kv_width = width // num_heads * kv_heads
    for name, x, arg, cols in (
        ("w_q", query, "query", width),
        ("w_k", key, "key", kv_width),
        ("w_v", value, "value", kv_width),
    ):
        rows, got = params[name].shape
        if _differ(rows, x.shape[-1]):
            raise ValueError(
                f"{arg} has feature size {x.shape[-1]} (shape "
                f"{tuple(x.shape)}) but params['{name}'] "
                f"has shape {tuple(params[name].shape)}, expecting "
                f"{x.shape[-1]} rows"
            )
        if got != cols:
            what = (
                f"the model width D = {width} of params['w_q']"
                if cols == width
                else f"num_kv_heads * D / num_heads = {kv_heads} * {width} / "
                f"{num_heads} "
                f"= {kv_width}"
            )
            if name != "w_q" and num_kv_heads is None:
                what += (
                    " (with fewer key/value heads than query heads, pass num_kv_heads)"
                )
            raise ValueError(
                f"params['{name}'] has shape {tuple(params[name].shape)}; "
                f"its columns must equal "
                f"{what}"
            )
    if params["w_o"].shape[0] != width:
        raise ValueError(
            f"params['w_o'] has shape {tuple(params['w_o'].shape)}; it "
            f"must have D = {width} rows"
        )
    want = {
        "b_q": width,
        "b_k": kv_width,
        "b_v": kv_width,
        "b_o": params["w_o"].shape[1],
    }
    for name, n in want.items():
        if name in params and tuple(params[name].shape) != (n,):
            raise ValueError(
                f"params['{name}'] must have shape ({n},), got "
                f"{tuple(params[name].shape)}"
            )
    for name, info in (("query", query), ("key", key), ("value", value)):
        check_float(name, info)
    check_same_dtype(
        {
            "query": query,
            "key": key,
            "value": value,
            **{f"params['{k}']": v for k, v in params.items()},
        }
    )
    check_devices(
        {
            "query": query,
            "key": key,
            "value": value,
            "mask": mask,
            "bias": bias,
            **{f"params['{k}']": v for k, v in params.items()},
        }
    )
    check_flag("causal", causal)
    check_flag("return_weights", return_weights)
    if _differ(key.shape[1], value.shape[1]):
        raise ValueError(
            f"key and value must have the same length Lk, got key "
            f"{tuple(key.shape)} "
            f"and value {tuple(value.shape)}"
        )
    (b,) = broadcast_shapes(
        {"query": query.shape[:1], "key": key.shape[:1], "value": value.shape[:1]}
    )
    target = (b, num_heads, query.shape[1], key.shape[1])
    check_dropout(dropout, seed)
    check_mask(mask, target, what="the multi-head score shape (B, H, Lq, Lk) =")
    check_bias(bias, target, what="the multi-head score shape (B, H, Lq, Lk) =")
    if rope is not None:
        rope = check_base("rope", rope)
        if (width // num_heads) % 2:
            raise ValueError(
                f"rope needs an even head size d = D / num_heads = {width} "
                f"/ {num_heads}"
            )
    return HeadPlan(width, params["w_o"].shape[1], num_heads, kv_heads, rope)


def check_base(name, base):
    """A base of positional frequencies: a finite number greater than 1."""
    value = check_real(name, base, "a finite number greater than 1")
    if not (math.isfinite(value) and value > 1):
        raise ValueError(f"{name} must be a finite number greater than 1, got {base!r}")
    return value


def structure(lq, lk, *, causal=False, window=None, align="top_left"):
    """A :class:`Plan` holding only the positions and key structure of an ``(lq,
    lk)`` score matrix, for the mask helpers (which write out what
    ``causal``/``window``/``align`` apply)."""
    lq, lk = check_length("lq", lq), check_length("lk", lk)
    left, right = check_window(window)
    offset = 0 if check_align(align) == "top_left" else lk - lq
    if causal:
        right = 0 if right is None else min(right, 0)
    return Plan((), lq, lk, None, None, 1.0, offset=offset, left=left, right=right)


def check_documents(segments_q, segments_k):
    """Checks for document_mask (``segments_k`` None: the same as ``segments_q``)."""
    for name, info in (("segments_q", segments_q), ("segments_k", segments_k)):
        if info is None:
            continue
        if not info.dtype.startswith(("int", "uint")):
            raise TypeError(
                f"{name} must be an integer array of segment ids, got dtype "
                f"{info.dtype}"
            )
        check_rank(name, info, 1, "(..., L)")
    if segments_k is not None:
        broadcast_shapes(
            {"segments_q": segments_q.shape[:-1], "segments_k": segments_k.shape[:-1]}
        )
        check_devices({"segments_q": segments_q, "segments_k": segments_k})


def check_rotary(x, positions, base, interleaved):
    """Checks for rotary_embedding; returns ``(base, interleaved)``."""
    check_rank("x", x, 2, "(..., L, d)")
    check_float("x", x)
    if x.shape[-1] is not None and x.shape[-1] % 2:
        raise ValueError(
            f"rotary_embedding needs an even feature size d, got x of "
            f"shape {tuple(x.shape)}"
        )
    if positions is not None:
        if positions.dtype == "bool" or not positions.dtype.startswith(
            ("int", "uint", "float", "bfloat")
        ):
            raise TypeError(
                f"positions must be an integer or floating-point array, got "
                f"dtype {positions.dtype}"
            )
        if not _fits(tuple(positions.shape), tuple(x.shape[:-1])):
            raise ValueError(
                f"positions of shape {tuple(positions.shape)} does not "
                f"broadcast to x's positions "
                f"(..., L) = {tuple(x.shape[:-1])}"
            )
    check_devices({"x": x, "positions": positions})
    return check_base("base", base), check_flag("interleaved", interleaved)


def check_alibi(num_heads, lq=0, lk=0, align="top_left", dtype="float32"):
    num_heads = check_integer(
        "num_heads", num_heads, least=1, what="a positive integer"
    )
    plan = structure(lq, lk, align=align)
    return num_heads, plan, check_dtype_name(dtype)


def alibi_slopes(num_heads):
    """Press et al.'s slopes as Python floats: ``2^(-8h/H)`` for a power of two
    ``H``; otherwise those of the largest power of two ``m < H`` followed by every
    other slope of ``2m``."""

    def geometric(m):
        return [2.0 ** (-8.0 * (h + 1) / m) for h in range(m)]

    if num_heads & (num_heads - 1) == 0:
        return geometric(num_heads)
    m = 1 << (num_heads.bit_length() - 1)
    return geometric(m) + geometric(2 * m)[0::2][: num_heads - m]


def check_length(name, value):
    return check_integer(name, value)


def check_lengths(info):
    if info.dtype not in (
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
    ):
        raise TypeError(f"lengths must be an integer array, got dtype {info.dtype}")
    check_rank("lengths", info, 1, "(B,)", exact=True)


def check_keep(info):
    if info.dtype == "bool":
        return
    if not info.dtype.startswith(("int", "uint")):
        raise TypeError(
            f"keep must be a boolean or 0/1 integer array, got dtype {info.dtype}"
        )


def check_bool(name, info):
    if info.dtype != "bool":
        raise TypeError(f"{name} must be boolean, got dtype {info.dtype}")


def check_dtype_name(dtype):
    if not isinstance(dtype, str):
        raise TypeError(
            f"dtype must be a dtype name ({', '.join(FLOAT_DTYPES)}), got {dtype!r}"
        )
    if dtype not in FLOAT_DTYPES:
        raise ValueError(
            f"dtype must be one of {', '.join(FLOAT_DTYPES)}, got {dtype!r}"
        )
    return dtype


def check_positional(length, d_model, base):
    length = check_length("length", length)
    d_model = check_length("d_model", d_model)
    return length, d_model, check_base("base", base)


def compute_dtype(dtype):
    """Dtype name in which softmax runs: float32 for reduced-precision inputs."""
    return "float32" if dtype in REDUCED_DTYPES else dtype
