"""Attention across machines: ring attention and all-to-all (Ulysses) parallelism.

A sequence of ``L`` tokens is cut into ``P`` shards, one per rank of a
``torch.distributed`` process group. :func:`ring_attention` and
:func:`ulysses_attention` take this rank's shards of query, key and value and return
this rank's shard of the output: the numbers of
:func:`attnbook.torch.scaled_dot_product_attention` over the whole sequence with the
same ``causal``, ``window`` and ``enable_gqa``, with gradients that match autograd
through it. Both are collective: every rank makes the same calls in the same order,
the backward pass included.

Shape letters: ``...`` batch and head axes, ``B`` batch, ``H`` query heads, ``Hkv``
key/value heads (``H`` with ``enable_gqa=False``), ``L`` the whole sequence, ``P``
ranks in the group, ``n = L / P`` tokens per shard, ``d`` query/key features, ``dv``
value features. Positions (for ``causal`` and ``window``) are those of the whole
sequence: query ``i`` may see key ``j`` iff ``i - left <= j <= i + right``.

Layouts (how :func:`shard` cuts a sequence and :func:`unshard` puts it back):

``"contiguous"``
    rank ``r`` holds tokens ``[r n, (r + 1) n)``. With ``causal=True`` rank ``r``
    attends to the keys of ranks ``0..r`` only, so the last rank does about
    ``2P - 1`` times the work of the first.
``"zigzag"``
    the sequence is cut into ``2P`` chunks of ``L / (2P)`` tokens and rank ``r``
    holds chunks ``r`` and ``2P - 1 - r``, in that order: one early chunk, one late.
    Under a causal mask every rank then does the same work (half of every block it
    receives, plus its own causal block). This is the load-balanced sharding of
    Megatron's context parallelism and of PyTorch's ``context_parallel``. Without a
    mask the layout changes only the order of the tokens.

Ulysses uses the contiguous layout. :func:`communication_bytes` gives the bytes each
rank sends, :func:`count_bytes` measures them, and :func:`spawn` runs a function on
``P`` local processes (gloo), so that a notebook can try all of it on one machine.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import math
import numbers
import os
import pickle
import socket
import struct
import sys
import tempfile
import time
from typing import NamedTuple

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from . import _spec
from . import torch as _attn

__all__ = [
    "ring_attention",
    "ulysses_attention",
    "shard",
    "unshard",
    "block_plan",
    "window_plan",
    "ring_hops",
    "merge",
    "communication_bytes",
    "count_bytes",
    "spawn",
    "demo",
    "LAYOUTS",
]

LAYOUTS = ("contiguous", "zigzag")
_TILE = 512  # rows and columns of one score tile in the ring's backward pass
_MAX_AXES = 8  # axes of a tensor that the argument check describes to the other ranks


# --- cutting a sequence into shards ---------------------------------------------------


def _cut(x, start, stop, dim):
    index = [slice(None)] * x.ndim
    index[dim] = slice(start, stop)
    return x[tuple(index)]


def _cat(parts, dim):
    if isinstance(parts[0], torch.Tensor):
        return torch.cat(parts, dim=dim)
    return np.concatenate(parts, axis=dim)


def shard(x, rank, world, layout="contiguous", dim=-2):
    """Rank ``rank``'s shard of ``x`` (a torch tensor or NumPy array) cut along ``dim``
    into ``world`` shards in ``layout``: ``L`` tokens become ``L / world``. ``L`` must
    be divisible by ``world`` (by ``2 * world`` for ``"zigzag"``)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be 'contiguous' or 'zigzag', got {layout!r}")
    if not (
        isinstance(world, numbers.Integral)
        and isinstance(rank, numbers.Integral)
        and 0 <= rank < world
    ):
        raise ValueError(f"need 0 <= rank < world, got rank {rank!r}, world {world!r}")
    length, parts = x.shape[dim], world if layout == "contiguous" else 2 * world
    if length % parts:
        raise ValueError(
            f"a sequence of {length} tokens (axis {dim} of shape "
            f"{tuple(x.shape)}) cannot be cut into {parts} equal chunks "
            f"for {world} ranks in the {layout} layout"
        )
    c = length // parts
    early = _cut(x, rank * c, (rank + 1) * c, dim)
    if layout == "contiguous":
        return early
    late = 2 * world - 1 - rank
    return _cat([early, _cut(x, late * c, (late + 1) * c, dim)], dim)


def unshard(shards, layout="contiguous", dim=-2):
    """The whole sequence from the list of every rank's shard, in rank order: the
    inverse of :func:`shard`."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be 'contiguous' or 'zigzag', got {layout!r}")
    if layout == "contiguous":
        return _cat(list(shards), dim)
    half = shards[0].shape[dim] // 2
    early = [_cut(s, 0, half, dim) for s in shards]  # chunks 0 .. P-1
    late = [_cut(s, half, 2 * half, dim) for s in reversed(shards)]  # chunks P .. 2P-1
    return _cat(early + late, dim)


def block_plan(rank, source, n, *, causal=False, layout="contiguous"):
    """What ``rank`` computes of the block (its queries) x (the keys of ``source``),
    ``n`` tokens each: ``None`` to skip it, else ``(rows, cols, diagonal)``, slices of
    the two shards and whether the causal mask applies inside them (only in the rank's
    own block; every other pair it computes is unmasked)."""
    whole = slice(0, n)
    if not causal:
        return whole, whole, False
    if source == rank:  # positions increase along both shards
        return whole, whole, True
    if layout == "contiguous":  # a later rank's keys all follow my queries
        return (whole, whole, False) if source < rank else None
    half = n // 2
    if source < rank:  # its early chunk precedes both of mine, and
        return whole, slice(0, half), False  # its late chunk follows both
    return slice(half, n), whole, False  # both its chunks precede my late chunk only


def _runs(rank, world, n, layout):
    """The runs of consecutive positions in a shard: ``(first row, first position,
    length)`` of each, one in ``"contiguous"``, two chunks in ``"zigzag"``."""
    if layout == "contiguous":
        return [(0, rank * n, n)]
    c = n // 2
    return [(0, rank * c, c), (c, (2 * world - 1 - rank) * c, c)]


def window_plan(rank, source, n, world, window, *, layout="contiguous"):
    """What ``rank`` computes of the block (its queries) x (the keys of ``source``),
    ``n`` tokens each, under ``window = (left, right)``: the query at position ``p`` of
    the whole sequence sees the keys at ``p - left ..= p + right`` (``None``: no bound
    on that side; a causal window of ``w`` keys is ``(w - 1, 0)``).

    Returns a list, empty to skip the block, of ``(rows, cols, local)``: slices of the
    two shards that hold every pair the window lets through, and the window inside
    them for :func:`attnbook.torch.flash_attention` (``None`` where it sees every
    pair), counted from their first row and column. One piece for each pair of runs
    of consecutive positions (up to four in ``"zigzag"``) that the window meets.
    """
    left, right = window
    pieces = []
    for row, at_q, nq in _runs(rank, world, n, layout):
        for col, at_k, nk in _runs(source, world, n, layout):
            # Query row + i may see key col + j iff lo <= j - i <= hi.
            lo = -math.inf if left is None else at_q - at_k - left
            hi = math.inf if right is None else at_q - at_k + right
            r0, r1 = max(0, -hi), min(nq, nk - lo)  # the rows that see some key
            c0, c1 = max(0, lo), min(nk, nq + hi)  # the keys that some row sees
            if r0 >= r1 or c0 >= c1:
                continue
            # Counted from (r0, c0) the band is lo - t <= j - i <= hi - t, t = c0 - r0,
            # and t lies in [lo, hi]: both sides are >= 0, a window flash_attention
            # takes. A side that no pair of the piece reaches is no bound at all.
            t = c0 - r0
            own_left = None if t - lo >= r1 - r0 - 1 else t - lo
            own_right = None if hi - t >= c1 - c0 - 1 else hi - t
            local = (
                None
                if own_left is None and own_right is None
                else (own_left, own_right)
            )
            pieces.append((slice(row + r0, row + r1), slice(col + c0, col + c1), local))
    return pieces


def ring_hops(world, n, *, causal=False, window=None, layout="contiguous"):
    """How many hops each key/value block makes around a ring of ``world`` ranks that
    hold ``n`` tokens each: the farthest, in ring steps, that a rank sits from a block
    its queries need (:func:`block_plan`, :func:`window_plan`). ``world - 1`` without a
    window; with a causal window of ``w`` keys in the contiguous layout,
    ``min(world - 1, ceil((w - 1) / n))``. A window with ``right > 0`` needs the next
    rank's block, which is ``world - 1`` hops away on a ring that turns one way, and so
    does any window wider than one token in the zigzag layout, where the late chunk of
    rank ``r`` follows the late chunk of rank ``r + 1``."""
    if not isinstance(world, numbers.Integral) or isinstance(world, bool) or world < 1:
        raise ValueError(f"world must be a positive integer, got {world!r}")
    n = _spec.check_integer("n", n, least=1, what="a positive integer")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be 'contiguous' or 'zigzag', got {layout!r}")
    if layout == "zigzag" and n % 2:
        raise ValueError(f"layout='zigzag' needs an even shard length, got n = {n}")
    left, right = _spec.check_window(window)
    if _spec.check_flag("causal", causal):
        right = 0 if right is None else min(right, 0)
    return _hops(int(world), n, left, right, layout)


@functools.lru_cache(maxsize=256)
def _hops(world, n, left, right, layout):
    for hops in range(world - 1, 0, -1):
        if any(
            window_plan(r, (r - hops) % world, n, world, (left, right), layout=layout)
            for r in range(world)
        ):
            return hops
    return 0


def merge(out1, lse1, out2, lse2):
    """Attention over the union of two disjoint key sets, from each one's output
    ``(..., Lq, dv)`` and log-sum-exp ``(..., Lq)``: returns ``(out, lse)``. A side with
    no key (``lse = -inf``) has weight 0, so a row with no key at all stays 0."""
    lse = torch.logaddexp(lse1, lse2)  # (..., Lq)
    # A row with no key at all: subtract 0, not -inf (-inf - -inf is NaN).
    ref = torch.where(torch.isneginf(lse), torch.zeros_like(lse), lse)
    w1, w2 = torch.exp(lse1 - ref)[..., None], torch.exp(lse2 - ref)[..., None]
    return w1 * out1 + w2 * out2, lse


# --- counting bytes -------------------------------------------------------------------

_COUNTERS = []


@contextlib.contextmanager
def count_bytes():
    """Count the bytes this rank sends inside the ``with`` block. Yields a dict:
    ``"forward"`` and ``"backward"``, the attention data (what
    :func:`communication_bytes` predicts), and ``"handshake"``, the argument check
    (``P - 1`` copies of a few dozen int64, what a ring all-gather sends). Run the
    backward pass inside the block to count it."""
    counts = {"forward": 0, "backward": 0, "handshake": 0}
    _COUNTERS.append(counts)
    try:
        yield counts
    finally:
        _COUNTERS.remove(counts)


def _count(phase, nbytes):
    for counts in _COUNTERS:
        counts[phase] += int(nbytes)


def communication_bytes(
    method,
    shape,
    world,
    dtype_bytes,
    causal=False,
    *,
    kv_heads=None,
    window=None,
    layout="contiguous",
):
    """Bytes one rank sends, ``{"forward": ..., "backward": ...}``, for attention over a
    whole sequence of ``shape = (..., L, d)`` (query, key and value alike, ``dv = d``)
    cut over ``world = P`` ranks; with ``kv_heads = Hkv`` (grouped-query attention)
    ``shape`` is ``(..., H, L, d)`` and key and value have ``Hkv`` of its ``H`` heads.

    With ``S = prod(shape) / P`` elements in a query shard, ``S_kv = S Hkv / H`` in a
    key shard and ``b = dtype_bytes``:

    * ``"ring"``: forward, key and value make ``h`` hops, ``2 h S_kv b``, where
      ``h = ring_hops(P, L / P, causal=..., window=..., layout=...)``: ``P - 1``, or
      fewer with a causal window that ends within a few shards. Backward, key and
      value again, and their gradient accumulators, which make ``h`` hops and then one
      more home, in the compute dtype (``b_acc = 4`` for 2-byte inputs, else ``b``):
      ``2 h S_kv b + 2 (h + 1) S_kv b_acc`` (0 when ``h = 0``). Only key and value
      travel, so grouped-query attention cuts the ring's traffic by ``H / Hkv``.
    * ``"ulysses"``: query, key, value and output each keep ``1/P`` of their elements
      and send the rest, ``2 (P - 1) (S + S_kv) b / P`` each way. ``shape`` is
      ``(B, H, L, d)`` with ``H`` and ``Hkv`` divisible by ``P``. A window changes
      nothing: every rank holds the whole sequence of its heads.

    ``causal`` alone changes neither: a causal ring still forwards the blocks it skips.
    """
    if method not in ("ring", "ulysses"):
        raise ValueError(f"method must be 'ring' or 'ulysses', got {method!r}")
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2 or (method == "ulysses" and len(shape) != 4):
        raise ValueError(
            "shape must be (..., L, d) for ring and (B, H, L, d) for "
            f"ulysses, got {shape}"
        )
    if not isinstance(world, numbers.Integral) or isinstance(world, bool) or world < 1:
        raise ValueError(f"world must be a positive integer, got {world!r}")
    if layout not in LAYOUTS or (method == "ulysses" and layout != "contiguous"):
        raise ValueError(
            f"layout must be 'contiguous' or 'zigzag' for ring and "
            f"'contiguous' for ulysses, got {layout!r}"
        )
    heads = shape[-3] if len(shape) >= 3 else 1
    if kv_heads is None:
        kv_heads = heads
    elif len(shape) < 3:
        raise ValueError(f"kv_heads needs a head axis (..., H, L, d), got {shape}")
    kv_heads = _spec.check_integer(
        "kv_heads", kv_heads, least=1, what="a positive integer or None"
    )
    if heads % kv_heads:
        raise ValueError(
            f"kv_heads = {kv_heads} must divide the H = {heads} query "
            f"heads of shape {shape}"
        )
    parts = world * (2 if layout == "zigzag" else 1)
    heads_split = method == "ring" or (heads % world == 0 and kv_heads % world == 0)
    if shape[-2] % parts or not heads_split:
        raise ValueError(
            f"shape {shape} with kv_heads = {kv_heads} does not split "
            f"over {world} ranks"
        )
    if dtype_bytes not in (2, 4, 8):
        raise ValueError(f"dtype_bytes must be 2, 4 or 8, got {dtype_bytes!r}")
    _spec.check_flag("causal", causal)
    p, b = world, dtype_bytes
    s = math.prod(shape) // p  # elements of a query shard
    s_kv = math.prod(shape) // heads * kv_heads // p  # and of a key shard
    if method == "ulysses":
        _spec.check_window(window)
        one_way = 2 * (p - 1) * (s + s_kv) // p * b
        return {"forward": one_way, "backward": one_way}
    h = ring_hops(p, shape[-2] // p, causal=causal, window=window, layout=layout)
    if h == 0:
        return {"forward": 0, "backward": 0}
    kv = 2 * h * s_kv * b
    return {"forward": kv, "backward": kv + 2 * (h + 1) * s_kv * max(b, 4)}


# --- the process group and the argument check -----------------------------------------


def _group(fn, group):
    """``(group, P, rank)`` for ``group`` (None: the world), if this process is in."""
    if not dist.is_available():
        raise RuntimeError(f"{fn} needs torch.distributed, which this PyTorch lacks")
    if not dist.is_initialized():
        raise RuntimeError(
            f"{fn} needs an initialised process group: call "
            "torch.distributed.init_process_group(...) in every process "
            "first (attnbook.distributed.spawn does it for you)"
        )
    if group is None:
        group = dist.group.WORLD
    elif isinstance(group, int) and group == dist.GroupMember.NON_GROUP_MEMBER:
        # What new_group returns to the ranks it leaves out.
        raise ValueError(
            f"{fn}: this process (global rank {dist.get_rank()}) is not "
            "in the group it was given; call it on that group's ranks"
        )
    elif not isinstance(group, dist.ProcessGroup):
        raise _spec.type_error("group", "torch.distributed.ProcessGroup or None", group)
    rank = dist.get_rank(group)
    if rank < 0:
        raise ValueError(
            f"{fn}: this process (global rank {dist.get_rank()}) is not "
            "in the group it was given; call it on that group's ranks"
        )
    return group, dist.get_world_size(group), rank


def _info(name, x):
    if not isinstance(x, torch.Tensor):
        raise _spec.type_error(name, "torch.Tensor", x)
    dtype = str(x.dtype).removeprefix("torch.")
    return _spec.Info(tuple(x.shape), dtype, str(x.device))


_DTYPES = [
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.float64,
    torch.bool,
    torch.uint8,
    torch.int8,
    torch.int16,
    torch.int32,
    torch.int64,
    torch.complex64,
    torch.complex128,
]


def _describe(x):
    """A tensor as ``_MAX_AXES + 2`` integers: its number of axes, sizes, dtype code."""
    if not isinstance(x, torch.Tensor) or x.dim() > _MAX_AXES:
        return [-1] * (_MAX_AXES + 2)
    code = _DTYPES.index(x.dtype) if x.dtype in _DTYPES else len(_DTYPES)
    return [x.dim(), *x.shape, *[-1] * (_MAX_AXES - x.dim()), code]


def _decode(row):
    code = int(row[-1])
    dtype = str(_DTYPES[code]) if code < len(_DTYPES) else "other"
    dtype = dtype.removeprefix("torch.")
    return tuple(int(s) for s in row[1 : 1 + int(row[0])]), dtype


def _choice(value, choices):
    """A flag that must be one of ``choices``, as ``(code, decode)`` for the handshake:
    its index (compared by type too: 1 is not True; -1 for none of them), and back."""
    code = next(
        (i for i, c in enumerate(choices) if type(value) is type(c) and value == c), -1
    )
    return code, lambda i: choices[i] if i >= 0 else "an invalid value"


def _number(value):
    """A number or None as ``(code, decode)``: the bits of its float64, -1 for None."""

    def decode(bits):
        return struct.unpack("<d", struct.pack("<q", bits))[0] if bits >= 0 else None

    if value is None:
        return -1, decode
    try:
        return struct.unpack("<q", struct.pack("<d", float(value)))[0], decode
    except (TypeError, ValueError, OverflowError):
        return -2, decode


def _window(value):
    """A window as ``(codes, decode)``: two integers, each side's size, -1 for None
    (``None`` is ``(None, None)``), -2 for what is not a valid size (which the rank's
    own check refuses)."""

    def side(v):
        if v is None:
            return -1
        ok = isinstance(v, numbers.Integral) and not _spec._is_flag(v)
        return int(v) if ok and 0 <= v <= _spec.INDEX_MAX else -2

    def decode(codes):
        sides = tuple(None if c == -1 else c if c >= 0 else "invalid" for c in codes)
        return None if sides == (None, None) else sides

    if value is None:
        return (-1, -1), decode
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        return (-2, -2), decode
    return (side(value[0]), side(value[1])), decode


def _comm_device(group):
    if "nccl" in str(dist.get_backend(group)):
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _all_gather(values, group, world):
    """Every rank's list of int64 ``values`` (one length): a ``(P, m)`` NumPy array."""
    mine = torch.tensor(values, dtype=torch.int64, device=_comm_device(group))
    rows = [torch.empty_like(mine) for _ in range(world)]
    _count("handshake", (world - 1) * mine.numel() * mine.element_size())
    dist.all_gather(rows, mine, group=group)
    return torch.stack(rows).cpu().numpy()


def _listing(values):
    """``"8 on ranks 0, 2 and 6 on rank 1"`` from one value per rank."""
    groups = {}
    for r, v in enumerate(values):
        groups.setdefault(v, []).append(r)
    parts = [
        f"{v} on rank {r[0]}"
        if len(r) == 1
        else f"{v} on ranks " + ", ".join(map(str, r))
        for v, r in groups.items()
    ]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def _handshake(fn, tensors, flags, check, group, world):
    """Run ``check()``, this rank's own argument checks, and compare the arguments
    across ranks, so that every rank raises the same error instead of some of them
    waiting forever for the others. Returns what ``check()`` returned.

    One all-gather of a few dozen integers carries each rank's outcome and a
    description of its ``tensors`` (shape, dtype) and ``flags``; when a rank failed its
    own checks, a second all-gather carries its message, and every rank raises the
    error of the lowest failing rank.
    """
    error, message, result = 0, b"", None
    try:
        result = check()
    except (TypeError, ValueError) as err:
        error, message = (1 if isinstance(err, TypeError) else 2), str(err).encode()
    if world == 1:
        if error:
            raise (TypeError if error == 1 else ValueError)(message.decode())
        return result
    described = [v for x in tensors.values() for v in _describe(x)]
    # A flag's code is one integer or a tuple of them (a window's two sides).
    codes = [code if isinstance(code, tuple) else (code,) for code, _ in flags.values()]
    flat = [c for cs in codes for c in cs]
    table = _all_gather([error, len(message), *described, *flat], group, world)
    if table[:, 0].any():
        padded = list(message) + [0] * (int(table[:, 1].max()) - len(message))
        texts = _all_gather(padded, group, world)
        r = int(np.flatnonzero(table[:, 0])[0])
        text = bytes(int(c) for c in texts[r, : table[r, 1]]).decode(errors="replace")
        kind = TypeError if table[r, 0] == 1 else ValueError
        raise kind(f"{fn} on rank {r} of {world}: {text}")
    width = _MAX_AXES + 2
    for i, name in enumerate(tensors):
        rows = [_decode(row[2 + i * width : 2 + (i + 1) * width]) for row in table]
        shapes, dtypes = [s for s, _ in rows], [t for _, t in rows]
        if len({s[:-2] + s[-1:] for s in shapes}) == 1 and len(set(shapes)) > 1:
            raise ValueError(
                f"{fn}: the shards have different lengths (axis -2 of {name}): "
                f"{_listing([s[-2] for s in shapes])}; cut the sequence into {world} "
                "equal shards with attnbook.distributed.shard, which needs its length "
                f"divisible by {world} ({2 * world} for the zigzag layout)"
            )
        if len(set(shapes)) > 1:
            raise ValueError(
                f"{fn}: {name} has shape {_listing(shapes)}; every rank "
                "must pass a shard of the same shape"
            )
        if len(set(dtypes)) > 1:
            raise TypeError(
                f"{fn}: {name} has dtype {_listing(dtypes)}; every rank "
                "must use one dtype"
            )
    start = 2 + len(tensors) * width
    for (name, (code, decode)), cs in zip(flags.items(), codes, strict=True):
        rows = [tuple(int(c) for c in row) for row in table[:, start : start + len(cs)]]
        start += len(cs)
        if len(set(rows)) > 1:
            values = [
                repr(decode(row if isinstance(code, tuple) else row[0])) for row in rows
            ]
            raise ValueError(
                f"{fn}: {name} differs across ranks: {_listing(values)}; "
                f"every rank must pass the same {name}"
            )
    return result


def _check_shards(fn, query, key, value, options, exact=None):
    """This rank's own checks, in attnbook's words; returns the ``_spec.Plan`` (its
    ``left``/``right``: the window in positions of the whole sequence, causal folded
    in)."""
    named = (("query", query), ("key", key), ("value", value))
    infos = {n: _info(n, x) for n, x in named}
    if exact is not None:
        for name, info in infos.items():
            _spec.check_rank(name, info, 4, exact, exact=True)
    plan = _spec.check_attention(*infos.values(), **options)
    for name, info in infos.items():
        if len(info.shape) > _MAX_AXES:
            raise ValueError(
                f"{name} has {len(info.shape)} axes; {fn} takes at most {_MAX_AXES}"
            )
    batch = -3 if options["enable_gqa"] else -2  # axes before the heads, or all
    if not (
        query.shape[:batch] == key.shape[:batch] == value.shape[:batch]
        and key.shape[:-2] == value.shape[:-2]
    ):
        hint = ""
        if (
            not options["enable_gqa"]
            and query.dim() >= 3
            and key.dim() >= 3
            and key.shape[-3] < query.shape[-3]
        ):
            hint = (
                "; for grouped-query attention (H query heads sharing Hkv key/"
                "value heads on axis -3) pass enable_gqa=True"
            )
        raise ValueError(
            f"{fn} needs the same batch axes in query "
            f"{tuple(query.shape)}, key {tuple(key.shape)} and value "
            f"{tuple(value.shape)} (no broadcasting: key and value travel "
            f"between ranks){hint}"
        )
    if query.shape[-2] != key.shape[-2]:
        raise ValueError(
            f"{fn} attends within one sequence: query "
            f"{tuple(query.shape)} and key {tuple(key.shape)} must be "
            "shards of the same length"
        )
    return plan


def _flags(causal, window, enable_gqa, scale):
    """The options every rank must pass alike, as :func:`_handshake` compares them."""
    return {
        "causal": _choice(causal, (False, True)),
        "window": _window(window),
        "enable_gqa": _choice(enable_gqa, (False, True)),
        "scale": _number(scale),
    }


# --- ring attention -------------------------------------------------------------------


def _compute(dtype):
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


class _Ring(NamedTuple):
    """A ring attention call once its arguments are checked."""

    group: object
    world: int
    rank: int
    layout: str
    left: int | None  # the window in positions of the whole sequence (None:
    right: int | None  #   unbounded), causal folded in as right <= 0
    gqa: bool  # H query heads share Hkv key/value heads
    scale: float
    hops: int  # how far each key/value block travels: ring_hops


def _pieces(ring, source, n):
    """What this rank computes of the block of ``source``: ``[(rows, cols, window)]``,
    the window as :func:`attnbook.torch.flash_attention` takes it inside the piece."""
    if ring.left is None and ring.right in (None, 0):  # no mask, or causal
        plan = block_plan(
            ring.rank, source, n, causal=ring.right == 0, layout=ring.layout
        )
        if plan is None:
            return []
        rows, cols, diagonal = plan
        return [(rows, cols, (None, 0) if diagonal else None)]
    return window_plan(
        ring.rank, source, n, ring.world, (ring.left, ring.right), layout=ring.layout
    )


def _ring_exchange(send, recv, ring, shift, tag, phase):
    """Post the send of ``send`` to rank ``r + shift`` and the receive of ``recv`` from
    rank ``r - shift`` (mod ``P``; 1 is the next rank); returns the requests."""
    succ = dist.get_global_rank(ring.group, (ring.rank + shift) % ring.world)
    pred = dist.get_global_rank(ring.group, (ring.rank - shift) % ring.world)
    _count(phase, send.numel() * send.element_size())
    return dist.batch_isend_irecv(
        [
            dist.P2POp(dist.isend, send, succ, ring.group, tag),
            dist.P2POp(dist.irecv, recv, pred, ring.group, tag),
        ]
    )


def _wait(requests):
    for request in requests:
        request.wait()


def _ring_forward(query, key, value, ring):
    """This rank's output ``(..., n, dv)`` and log-sum-exp ``(..., n)``, both in the
    compute dtype."""
    n, d, compute = query.shape[-2], key.shape[-1], _compute(query.dtype)
    q, dev = query.to(compute), query.device
    out = torch.zeros(*query.shape[:-1], value.shape[-1], dtype=compute, device=dev)
    lse = torch.full(query.shape[:-1], float("-inf"), dtype=compute, device=dev)
    kv = torch.cat([key, value], dim=-1)  # (..., n, d + dv): one message a step
    spare = [torch.empty_like(kv), torch.empty_like(kv)]
    for step in range(ring.hops + 1):  # P - 1 hops, fewer with a window
        source = (ring.rank - step) % ring.world  # whose keys and values we hold
        if step < ring.hops:  # pass them on before computing, so
            incoming = spare[step % 2]  # that the transfer overlaps the work
            requests = _ring_exchange(kv, incoming, ring, 1, 0, "forward")
        for rows, cols, window in _pieces(ring, source, n):
            o_blk, lse_blk = _attn.flash_attention(
                q[..., rows, :],
                kv[..., cols, :d].to(compute),
                kv[..., cols, d:].to(compute),
                window=window,
                enable_gqa=ring.gqa,
                scale=ring.scale,
                return_lse=True,
            )  # (..., rows, dv), (..., rows)
            out[..., rows, :], lse[..., rows] = merge(
                out[..., rows, :], lse[..., rows], o_blk, lse_blk
            )
        if step < ring.hops:
            _wait(requests)
            kv = incoming
    return out, lse


def _block_grads(q, k, v, do, lse, delta, scale, window, groups):
    """FlashAttention's backward pass over one block, tile by tile.

    Queries ``q (..., nq, d)``, keys ``k (..., nk, d)``, values ``v (..., nk, dv)``,
    output gradient ``do (..., nq, dv)``, the *global* log-sum-exp ``lse (..., nq)`` of
    the forward pass and ``delta = rowsum(do * o) (..., nq)``; ``window`` is the
    causal/window structure inside the block, as ``flash_attention`` takes it (None:
    every pair). With ``groups = H / Hkv > 1`` the head axis (-3) of ``q``, ``do``,
    ``lse`` and ``delta`` has ``H`` heads and that of ``k`` and ``v`` ``Hkv``. Returns
    this block's share of the gradients ``(dq, dk, dv)``.
    """
    shape, nq, nk = q.shape, q.shape[-2], k.shape[-2]
    # The query heads that share a key/value head side by side, (..., Hkv, g, nq, d),
    # against keys (..., Hkv, 1, nk, d): keys are never repeated, and their gradients
    # sum over the group.
    heads = k.shape[:-2] + (groups, nq)
    q, do = q.reshape(heads + q.shape[-1:]), do.reshape(heads + do.shape[-1:])
    lse, delta = lse.reshape(heads), delta.reshape(heads)
    kg, vg = k.unsqueeze(-3), v.unsqueeze(-3)
    dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    lse = torch.where(torch.isneginf(lse), torch.full_like(lse, float("inf")), lse)
    left, right = window or (None, None)
    plan = _spec.Plan((), nq, nk, None, None, scale, left=left, right=right)
    for rows in _spec.block_slices(nq, _TILE):
        r0, r1 = rows
        for cols in _spec.key_tiles(plan, rows, _TILE):  # the keys the window shows
            c0, c1 = cols
            kt, vt, go = kg[..., c0:c1, :], vg[..., c0:c1, :], do[..., r0:r1, :]
            s = (q[..., r0:r1, :] @ kt.transpose(-2, -1)) * scale  # (..., tq, tk)
            allowed = _attn._structure(plan, rows, cols, q.device)  # None: all
            if allowed is not None:
                s = s.masked_fill(~allowed, float("-inf"))
            # The weights, recomputed from the saved lse (0 in a row without keys,
            # whose lse is now +inf).
            p = torch.exp(s - lse[..., r0:r1, None])  # (..., tq, tk)
            dv[..., c0:c1, :] += (p.transpose(-2, -1) @ go).sum(-3)
            ds = p * (go @ vt.transpose(-2, -1) - delta[..., r0:r1, None])  # dS
            dq[..., r0:r1, :] += (ds @ kt) * scale
            g_k = (ds.transpose(-2, -1) @ q[..., r0:r1, :]).sum(-3)
            dk[..., c0:c1, :] += g_k * scale
    return dq.reshape(shape), dk, dv


def _ring_backward(grad, query, key, value, out, lse, ring):
    """Gradients of query, key and value. Key/value blocks go round the ring again,
    each followed by the accumulator of its gradients, to which every rank adds its
    share; after the last hop the accumulator goes home to the block's owner, ``hops``
    ranks back (the next rank when the ring is whole)."""
    n, d, compute = query.shape[-2], key.shape[-1], out.dtype
    q, do = query.to(compute), grad.to(compute)
    delta = (do * out).sum(dim=-1)  # (..., n): D = rowsum(dO * O)
    dq = torch.zeros_like(q)
    kv = torch.cat([key, value], dim=-1)  # (..., n, d + dv)
    spare = [torch.empty_like(kv), torch.empty_like(kv)]
    accs = [
        torch.zeros(kv.shape, dtype=compute, device=kv.device),  # dK | dV of the
        torch.empty(kv.shape, dtype=compute, device=kv.device),
    ]  # block we hold
    groups = query.shape[-3] // key.shape[-3] if ring.gqa else 1
    acc, grad_requests = accs[0], None
    for step in range(ring.hops + 1):
        source = (ring.rank - step) % ring.world
        if step < ring.hops:
            incoming = spare[step % 2]
            requests = _ring_exchange(kv, incoming, ring, 1, 0, "backward")
        shares = []
        for rows, cols, window in _pieces(ring, source, n):
            g_q, g_k, g_v = _block_grads(
                q[..., rows, :],
                kv[..., cols, :d].to(compute),
                kv[..., cols, d:].to(compute),
                do[..., rows, :],
                lse[..., rows],
                delta[..., rows],
                ring.scale,
                window,
                groups,
            )
            dq[..., rows, :] += g_q
            shares.append((cols, g_k, g_v))
        if grad_requests is not None:  # this block's accumulator, sent by
            _wait(grad_requests)  # the previous rank while we computed
            acc = accs[step % 2]
        for cols, g_k, g_v in shares:
            acc[..., cols, :d] += g_k
            acc[..., cols, d:] += g_v
        if ring.hops > 0:  # on to the next rank; after the last
            shift = 1 if step < ring.hops else -ring.hops  # step, home
            grad_requests = _ring_exchange(
                acc, accs[(step + 1) % 2], ring, shift, 1, "backward"
            )
        if step < ring.hops:
            _wait(requests)
            kv = incoming
    if grad_requests is not None:
        _wait(grad_requests)
        acc = accs[(ring.hops + 1) % 2]
    return dq.to(query.dtype), acc[..., :d].to(key.dtype), acc[..., d:].to(value.dtype)


class _RingAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, query, key, value, ring):
        out, lse = _ring_forward(query, key, value, ring)
        ctx.save_for_backward(query, key, value, out, lse)
        ctx.ring = ring
        return out.to(query.dtype)

    @staticmethod
    def backward(ctx, grad):
        return (*_ring_backward(grad, *ctx.saved_tensors, ctx.ring), None)


def ring_attention(
    query,
    key,
    value,
    *,
    causal=False,
    window=None,
    enable_gqa=False,
    scale=None,
    group=None,
    layout="contiguous",
):
    """Attention over a sequence sharded across the ``P`` ranks of ``group``, passing
    key/value blocks around a ring (Liu et al., 2023).

    Args:
        query, key, value: this rank's shards ``(..., n, d)``, ``(..., n, d)`` and
            ``(..., n, dv)`` of one sequence of ``L = P n`` tokens, cut by
            :func:`shard` in ``layout``; the same shapes and dtype on every rank. With
            ``enable_gqa``, ``(..., H, n, d)``, ``(..., Hkv, n, d)``, ``(..., Hkv, n,
            dv)``.
        causal: query ``i`` of the whole sequence attends to keys ``j <= i`` only.
        window: ``None`` or ``(left, right)``, each a non-negative integer or ``None``:
            query ``i`` of the whole sequence attends to keys ``i - left ..= i +
            right`` only (``(w - 1, 0)``: a causal window of ``w`` keys). Combines with
            ``causal`` as in :func:`attnbook.torch.scaled_dot_product_attention`.
        enable_gqa: grouped-query attention: ``H`` query heads share ``Hkv`` key/value
            heads on axis -3, ``H % Hkv == 0``, query head ``h`` using key/value head
            ``h // (H / Hkv)``; keys and values are never repeated.
        scale: multiplier of the scores, ``None`` for ``1 / sqrt(d)``.
        group: a ``torch.distributed`` process group, ``None`` for the world.
        layout: ``"contiguous"`` or ``"zigzag"`` (see the module docstring).

    Returns:
        This rank's output shard ``(..., n, dv)`` (``(..., H, n, dv)``) in ``layout``,
        dtype of ``query``.

    At step ``s`` rank ``r`` holds the key/value shard of rank ``r - s`` (mod ``P``).
    It posts the send of that shard to rank ``r + 1`` and the receive of the next one
    from rank ``r - 1``, attends to the block it holds with
    :func:`attnbook.torch.flash_attention` (which also returns the log-sum-exp),
    merges the result into its running output (:func:`merge`), then waits. It computes
    only the part of a block that ``causal`` and ``window`` let its queries see
    (:func:`block_plan`, :func:`window_plan`), in positions of the whole sequence. The
    backward pass is a second ring: the blocks circulate again, each followed by its
    gradient accumulator ``dK | dV``, to which every rank adds its share
    (FlashAttention's backward from the saved log-sum-exp); after the last hop each
    accumulator goes home to its owner.

    Only keys and values travel, so with grouped-query attention each hop carries
    ``Hkv / H`` of the bytes of multi-head attention: what makes GQA pay across
    machines. A window shortens the ring itself: a block travels only as far as the
    farthest rank whose queries see one of its keys, :func:`ring_hops` hops instead of
    ``P - 1``, and the accumulators return home from there in one message. With a
    causal window of ``w`` keys in the contiguous layout that is ``ceil((w - 1) / n)``
    hops. A window that looks ahead (``right > 0``), or the zigzag layout (whose late
    chunks run backwards, so each rank needs the block of the rank after it), needs
    the whole ring, although each rank still computes only what the window shows; use
    the contiguous layout with a causal window, which balances the work by itself.
    Every rank makes the same number of hops, so a block that no later rank needs
    still travels when another block needs the hop (the wrap-around blocks of a causal
    window). Bytes sent: :func:`communication_bytes`.

    Raises:
        RuntimeError: no process group has been initialised.
        TypeError / ValueError: as :func:`attnbook.torch.scaled_dot_product_attention`;
            for a ``layout`` that is neither of the two, an odd shard length in
            ``"zigzag"``, and shapes, dtypes or flags that differ between ranks. Every
            rank raises the same error.
    """
    group, world, rank = _group("ring_attention", group)
    options = {
        "causal": causal,
        "window": window,
        "enable_gqa": enable_gqa,
        "scale": scale,
    }

    def check():
        plan = _check_shards("ring_attention", query, key, value, options)
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be 'contiguous' or 'zigzag', got {layout!r}")
        if layout == "zigzag" and query.shape[-2] % 2:
            raise ValueError(
                "layout='zigzag' needs an even shard length (two chunks "
                f"of a sequence cut into {2 * world}), got query "
                f"{tuple(query.shape)}"
            )
        return plan

    flags = {
        **_flags(causal, window, enable_gqa, scale),
        "layout": _choice(layout, LAYOUTS),
    }
    plan = _handshake(
        "ring_attention",
        {"query": query, "key": key, "value": value},
        flags,
        check,
        group,
        world,
    )
    hops = _hops(world, plan.lq, plan.left, plan.right, layout)
    ring = _Ring(
        group,
        world,
        rank,
        layout,
        plan.left,
        plan.right,
        bool(enable_gqa),
        plan.scale,
        hops,
    )
    return _RingAttention.apply(query, key, value, ring)


# --- all-to-all (Ulysses) -------------------------------------------------------------


def _all_to_all(send, group, world, phase):
    """Piece ``j`` of ``send (P, ...)`` goes to rank ``j``; piece ``j`` of the result
    came from rank ``j``."""
    if world == 1:
        return send
    recv = torch.empty_like(send)
    _count(phase, send.numel() // world * (world - 1) * send.element_size())
    dist.all_to_all_single(recv, send, group=group)
    return recv


def _seq_to_heads(xs, group, world, phase):
    """Sequence shards ``(B, H_i, n, e_i)`` -> ``(B, H_i/P, L, e_i)``, all tokens of
    ``H_i / P`` heads of each tensor, in one all-to-all."""
    pieces = []
    for x in xs:
        b, h, n, e = x.shape
        # (P, B, H/P, n, e): piece j, heads [j H/P, (j+1) H/P) of my tokens, to rank j.
        piece = x.reshape(b, world, h // world, n, e).transpose(0, 1)
        pieces.append(piece.reshape(world, b * h // world * n * e))
    recv = _all_to_all(torch.cat(pieces, dim=1), group, world, phase)
    out = []  # piece j: rank j's tokens, my heads
    parts = recv.split([p.shape[1] for p in pieces], dim=1)
    for x, part in zip(xs, parts, strict=True):
        b, h, n, e = x.shape
        part = part.reshape(world, b, h // world, n, e).permute(1, 2, 0, 3, 4)
        out.append(part.reshape(b, h // world, world * n, e))
    return out


def _heads_to_seq(ys, group, world, phase):
    """``(B, H_i/P, L, e_i)`` -> ``(B, H_i, n, e_i)``: the inverse of
    :func:`_seq_to_heads`."""
    pieces = []
    for y in ys:
        b, hp, length, e = y.shape
        n = length // world
        # (P, B, H/P, n, e): piece j, rank j's tokens of my heads, goes back to rank j.
        piece = y.reshape(b, hp, world, n, e).permute(2, 0, 1, 3, 4)
        pieces.append(piece.reshape(world, b * hp * n * e))
    recv = _all_to_all(torch.cat(pieces, dim=1), group, world, phase)
    out = []  # piece j: my tokens, rank j's heads
    parts = recv.split([p.shape[1] for p in pieces], dim=1)
    for y, part in zip(ys, parts, strict=True):
        b, hp, length, e = y.shape
        part = part.reshape(world, b, hp, length // world, e).transpose(0, 1)
        out.append(part.reshape(b, world * hp, length // world, e))
    return out


class _SeqToHeads(torch.autograd.Function):
    """An all-to-all only moves numbers: it is linear, its backward the inverse."""

    @staticmethod
    def forward(ctx, group, world, *xs):
        ctx.comm = (group, world)
        return tuple(_seq_to_heads(xs, group, world, "forward"))

    @staticmethod
    def backward(ctx, *grads):
        return (None, None, *_heads_to_seq(grads, *ctx.comm, "backward"))


class _HeadsToSeq(torch.autograd.Function):
    @staticmethod
    def forward(ctx, group, world, *ys):
        ctx.comm = (group, world)
        return tuple(_heads_to_seq(ys, group, world, "forward"))

    @staticmethod
    def backward(ctx, *grads):
        return (None, None, *_seq_to_heads(grads, *ctx.comm, "backward"))


def ulysses_attention(
    query,
    key,
    value,
    *,
    causal=False,
    window=None,
    enable_gqa=False,
    scale=None,
    group=None,
):
    """Attention over a sequence sharded across the ``P`` ranks of ``group``,
    re-sharded from the sequence to the heads and back by two all-to-alls
    (DeepSpeed-Ulysses, Jacobs et al., 2023).

    Args:
        query, key, value: this rank's contiguous shards ``(B, H, n, d)``,
            ``(B, Hkv, n, d)`` and ``(B, Hkv, n, dv)`` of one sequence of ``L = P n``
            tokens, with ``H`` and ``Hkv`` divisible by ``P`` (``Hkv = H`` unless
            ``enable_gqa``).
        causal, window, enable_gqa, scale, group: as :func:`ring_attention`.

    Returns:
        This rank's output shard ``(B, H, n, dv)``.

    The first all-to-all (query and key|value packed into one message) gives every
    rank all ``L`` tokens of ``H / P`` query heads and of the ``Hkv / P`` key/value
    heads they use; :func:`attnbook.torch.scaled_dot_product_attention` attends
    locally, with the window, if any, over the whole sequence it now holds; the second
    all-to-all brings the output back to sequence shards. Both exchanges are autograd
    functions whose backward is the inverse exchange. They use
    ``torch.distributed.all_to_all_single``, which gloo implements on CPU.

    Grouped-query attention cuts only the key/value half of the traffic, and it caps
    ``P`` at ``Hkv``: with fewer key/value heads than ranks, each key/value head would
    have to be copied to ``P / Hkv`` ranks. This function refuses rather than copy
    behind your back; to run such a model, repeat the heads yourself
    (``key.repeat_interleave(r, dim=1)`` and the same for ``value``, to ``r Hkv``
    heads, a multiple of ``P`` that divides ``H``), which costs their bytes, or use
    :func:`ring_attention`, which has no such limit.

    Raises:
        RuntimeError / TypeError / ValueError: as :func:`ring_attention`, and for
            inputs that are not 4-D or whose ``H`` or ``Hkv`` is not divisible by
            ``P``. Every rank raises the same error.
    """
    group, world, _ = _group("ulysses_attention", group)
    options = {
        "causal": causal,
        "window": window,
        "enable_gqa": enable_gqa,
        "scale": scale,
    }

    def check():
        plan = _check_shards(
            "ulysses_attention", query, key, value, options, exact="(B, H, L/P, d)"
        )
        if query.shape[1] % world:
            raise ValueError(
                f"ulysses_attention splits the heads over the {world} "
                f"ranks: H = {query.shape[1]} (axis 1 of query "
                f"{tuple(query.shape)}) must be divisible by {world}; "
                "ring_attention has no such constraint"
            )
        if key.shape[1] % world:
            raise ValueError(
                f"ulysses_attention splits the key/value heads over the {world} ranks "
                f"too: Hkv = {key.shape[1]} (axis 1 of key {tuple(key.shape)}) must be "
                f"divisible by {world}. Fewer key/value heads than ranks would have to "
                "be copied, which it does not do silently: repeat them yourself "
                "(key.repeat_interleave(r, dim=1), and value, to a multiple of "
                f"{world} that divides H = {query.shape[1]}), or use ring_attention"
            )
        return plan

    plan = _handshake(
        "ulysses_attention",
        {"query": query, "key": key, "value": value},
        _flags(causal, window, enable_gqa, scale),
        check,
        group,
        world,
    )
    kv = torch.cat([key, value], dim=-1)  # (B, Hkv, n, d + dv)
    q, kv = _SeqToHeads.apply(group, world, query, kv)  # all L tokens, 1/P of heads
    k, v = kv.split([key.shape[-1], value.shape[-1]], dim=-1)
    window = (plan.left, plan.right)
    out = _attn.scaled_dot_product_attention(
        q, k, v, window=window, enable_gqa=enable_gqa, scale=plan.scale
    )
    (out,) = _HeadsToSeq.apply(group, world, out)  # (B, H, n, dv)
    return out


# --- running P processes from a notebook ----------------------------------------------


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, backend, timeout, fn, args, outdir):
    torch.set_num_threads(1)  # the processes share the cores: one thread each
    if sys.platform.startswith("linux") and os.path.exists("/sys/class/net/lo"):
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # stay on the loopback
    if backend == "nccl":
        torch.cuda.set_device(rank)
    dist.init_process_group(
        backend,
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=timeout),
    )
    try:
        result = fn(rank, world, *args)
    except BaseException:
        # When this rank failed, for the report: its peers fail after it, once its
        # sockets close.
        with open(os.path.join(outdir, f"{rank}.failed"), "w") as f:
            f.write(repr(time.time()))
        raise
    path = os.path.join(outdir, f"{rank}.pt")
    torch.save(result, path + ".part")
    os.replace(path + ".part", path)
    dist.barrier()  # no rank leaves while another may still need it
    dist.destroy_process_group()


def _first_failure(context, world, name, outdir):
    """The traceback of the rank that raised first. When one rank fails, the ranks
    waiting for it fail next ("connection closed by peer"): consequences, not causes."""
    failures = []
    for rank, path in enumerate(context.error_files):
        with contextlib.suppress(OSError):
            with open(path, "rb") as f:
                trace = pickle.load(f)
            when = os.path.getmtime(path)  # a rank that failed before fn ran
            marker = os.path.join(outdir, f"{rank}.failed")
            with contextlib.suppress(OSError), open(marker) as f:
                when = float(f.read())
            failures.append((when, rank, trace))
    _, rank, trace = min(failures)
    others = [r for _, r, _ in sorted(failures)[1:]]
    after = f" (then ranks {others} failed too)" if others else ""
    return f"spawn: rank {rank} of {world} raised in {name}{after}:\n\n{trace}"


def _left(deadline):
    """Seconds to wait for the processes now: at most 1, never past ``deadline``."""
    return min(1.0, max(0.0, deadline - time.monotonic()))


def spawn(fn, world, *args, backend="gloo", timeout=120.0):
    """Run ``fn(rank, world, *args)`` in ``world`` fresh processes joined in one process
    group; return their return values, in rank order.

    ``fn`` must be importable by name, i.e. defined at the top level of a module (not
    in a notebook, not a lambda), and its arguments and results picklable (tensors
    are). Each process uses one torch thread and a free localhost port chosen here. If
    a process raises, the others are killed and ``RuntimeError`` reports the first
    failure's traceback; if they have not all finished after ``timeout`` seconds, they
    are killed and ``TimeoutError`` is raised. ``backend="nccl"`` puts rank ``r`` on
    GPU ``r``.
    """
    name = getattr(fn, "__qualname__", repr(fn))
    if getattr(fn, "__module__", "__main__") == "__main__" or "<" in name:
        raise ValueError(
            "spawn starts fresh processes, which import fn by name: "
            f"{name} must be defined at the top level of a module, not in "
            "a notebook nor as a lambda or nested function "
            "(attnbook.distributed.demo is one)"
        )
    if not isinstance(world, numbers.Integral) or isinstance(world, bool) or world < 1:
        raise ValueError(f"world must be a positive integer, got {world!r}")
    if not (isinstance(timeout, numbers.Real) and 0 < timeout < math.inf):
        raise ValueError(
            f"timeout must be a positive number of seconds, got {timeout!r}"
        )
    if backend == "nccl" and torch.cuda.device_count() < world:
        raise ValueError(
            f"backend='nccl' puts each rank on its own GPU: {world} ranks "
            f"need {world} GPUs, this machine has "
            f"{torch.cuda.device_count()}"
        )
    with tempfile.TemporaryDirectory(prefix="attnbook-spawn-") as outdir:
        config = (world, _free_port(), backend, float(timeout), fn, args, outdir)
        context = mp.start_processes(
            _worker, args=config, nprocs=world, join=False, start_method="spawn"
        )
        deadline = time.monotonic() + timeout
        try:
            while not context.join(timeout=_left(deadline), grace_period=1.0):
                if time.monotonic() >= deadline:
                    alive = [r for r, p in enumerate(context.processes) if p.is_alive()]
                    raise TimeoutError(
                        f"spawn: {name} had not finished after {timeout} s on ranks "
                        f"{alive} of {world}, which were killed; a rank that waits for "
                        "a collective another rank never calls waits forever: check "
                        "that every rank makes the same calls"
                    )
        except mp.ProcessRaisedException:
            raise RuntimeError(_first_failure(context, world, name, outdir)) from None
        except mp.ProcessExitedException as err:
            raise RuntimeError(
                f"spawn: rank {err.error_index} of {world} died in {name} ({err})"
            ) from None
        finally:
            for process in context.processes:
                if process.is_alive():
                    process.kill()
                process.join()
            for path in context.error_files:
                with contextlib.suppress(OSError):
                    os.remove(path)
        return [
            torch.load(os.path.join(outdir, f"{r}.pt"), weights_only=False)
            for r in range(world)
        ]


def demo(rank, world, query, key, value, grad, cases, sizes=None, repeats=3):
    """A worker for :func:`spawn` (the book runs it): forward and backward passes of
    each case on this rank's shards, in groups made of the first ``P`` ranks, for each
    ``P`` in ``sizes`` (default: ``(world,)``).

    ``query, key, value, grad`` are whole ``(B, H, L, d)`` tensors, the same on every
    rank, which cuts its own shards. ``cases`` is a list of ``(method, layout,
    causal)``, method ``"ring"`` or ``"ulysses"``, or ``(method, layout, causal,
    options)`` with ``options`` a dict of: ``window`` (as the attention functions),
    ``kv_heads`` (grouped-query attention with the first ``kv_heads`` heads of key and
    value, ``enable_gqa=True``) and ``repeats`` (for this case instead of the
    argument). Returns on each rank a list of dicts with ``P``, ``case`` (its index in
    ``cases``), ``method, layout, causal, options``, ``out`` and ``grads`` (this rank's
    shards), ``bytes`` (:func:`count_bytes` of the first run) and ``seconds``, the
    median of ``repeats`` further runs (the first run's time when ``repeats`` is 0),
    each started by all the group's ranks at a barrier; ranks outside a group return
    nothing for it.
    """
    results = []
    for p in sizes or (world,):
        group = dist.new_group(list(range(p)))  # every rank takes part in new_group
        if rank < p:
            for index, (method, layout, causal, *more) in enumerate(cases):
                options = dict(more[0]) if more else {}
                kv_heads = options.pop("kv_heads", None)
                runs = options.pop("repeats", repeats)
                fn = ring_attention if method == "ring" else ulysses_attention
                extra = {"layout": layout} if method == "ring" else {}
                k_all, v_all = key, value
                if kv_heads is not None:
                    k_all, v_all = key[:, :kv_heads], value[:, :kv_heads]
                    extra["enable_gqa"] = True
                q, k, v = (
                    shard(x, rank, p, layout).detach().requires_grad_()
                    for x in (query, k_all, v_all)
                )
                g = shard(grad, rank, p, layout)
                times = []
                for run in range(runs + 1):
                    dist.barrier(group=group)
                    start = time.perf_counter()
                    with count_bytes() as sent:
                        out = fn(
                            q, k, v, causal=causal, group=group, **options, **extra
                        )
                        grads = torch.autograd.grad(out, (q, k, v), g)
                    times.append(time.perf_counter() - start)
                    if run == 0:
                        record = {
                            "P": p,
                            "case": index,
                            "method": method,
                            "layout": layout,
                            "causal": causal,
                            "options": dict(more[0]) if more else {},
                            "out": out.detach(),
                            "grads": grads,
                            "bytes": sent,
                        }
                record["seconds"] = float(np.median(times[1:] or times))
                results.append(record)
        dist.barrier()
    return results
