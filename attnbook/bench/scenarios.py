"""The shapes and options the benchmark times: today's attention, not only the square
multi-head case.

A scenario fixes the heads, the key/value heads, the query length, the options passed
to attnbook (``causal``, ``window``, ``align``, ``enable_gqa``) and the layout of the
arrays (4-D ``(B, H, L, d)``, or the same numbers as 3-D or 5-D arrays, which
PyTorch's fused CPU kernel does not take). Each framework's own attention is given
the same problem in its own terms (a boolean mask for a window, ``enable_gqa`` for
grouped heads), so that the rows of one scenario compare like with like.
"""

from __future__ import annotations

from typing import NamedTuple


class Scenario(NamedTuple):
    name: str
    about: str
    heads: int | None  # None: the --heads of the command line
    kv_heads: int | None  # None: as many as heads
    decode: bool = False  # one query against N keys (bottom-right aligned)
    window: int | None = None  # a causal sliding window of this many keys
    layout: str = "4d"  # "4d" (B, H, L, d), "3d" (B*H, L, d) or "5d" (B, 2, H/2, L, d)
    sizes: tuple = ()  # default sizes N when --sizes is not given
    causal: bool | None = None  # None: the --causal of the command line


SCENARIOS = {
    s.name: s
    for s in (
        Scenario(
            "mha",
            "multi-head attention, Lq = Lk = N (--heads, --causal)",
            None,
            None,
            sizes=(256, 1024, 4096, 16384),
        ),
        Scenario(
            "mha32",
            "32 heads, the baseline of the grouped rows",
            32,
            None,
            sizes=(1024, 4096),
        ),
        Scenario(
            "gqa32x8",
            "grouped-query attention: 32 query heads share 8 key/value heads",
            32,
            8,
            sizes=(1024, 4096),
        ),
        Scenario(
            "mqa32",
            "multi-query attention: 32 query heads share one key/value head",
            32,
            1,
            sizes=(1024, 4096),
        ),
        Scenario(
            "window256",
            "causal sliding window of 256 keys, one head",
            1,
            None,
            window=256,
            sizes=(1024, 4096, 16384),
            causal=True,
        ),
        Scenario(
            "decode",
            "decoding: one query against N cached keys, 32 heads, bottom-right causal",
            32,
            None,
            decode=True,
            sizes=(1024, 4096, 16384),
            causal=True,
        ),
        Scenario(
            "3d",
            "4 heads as a 3-D array (B*H, N, d)",
            4,
            None,
            layout="3d",
            sizes=(4096,),
        ),
        Scenario(
            "5d",
            "4 heads as a 5-D array (B, 2, 2, N, d)",
            4,
            None,
            layout="5d",
            sizes=(4096,),
        ),
    )
}


def attnbook_options(s, causal):
    """The keyword arguments of attnbook's attention for scenario ``s``."""
    kw = {"causal": causal}
    if s.window is not None:
        kw["window"] = (s.window - 1, 0)
    if s.decode:
        kw["align"] = "bottom_right"
    if s.kv_heads is not None and s.kv_heads != s.heads:
        kw["enable_gqa"] = True
    return kw


def visible_pairs(s, lq, lk, causal):
    """How many (query, key) pairs the scenario computes: the work, for GFLOP/s (``4
    * pairs * d`` per head)."""
    if s.window is not None:
        w = min(s.window, lk)
        return w * lq - w * (w - 1) // 2  # sum over rows of min(i + 1, w), Lq = Lk
    if s.decode or not causal:
        return lq * lk
    return lq * (lq + 1) // 2  # top-left causal, Lq = Lk


def shapes(s, batch, heads, n, d):
    """``(query shape, key/value shape)`` of scenario ``s`` at size ``n``."""
    kv = heads if s.kv_heads is None else s.kv_heads
    lq = 1 if s.decode else n
    if s.layout == "3d":
        return (batch * heads, lq, d), (batch * kv, n, d)
    if s.layout == "5d":
        return (batch, 2, heads // 2, lq, d), (batch, 2, kv // 2, n, d)
    return (batch, heads, lq, d), (batch, kv, n, d)
