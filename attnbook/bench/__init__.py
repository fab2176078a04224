"""The benchmark suite of attnbook: ``python -m attnbook.bench`` (see ``--help``).

It times every attnbook ``scaled_dot_product_attention`` and ``flash_attention`` next
to the fastest attention each framework ships (plain NumPy,
``torch.nn.functional.scaled_dot_product_attention`` with each of its kernels,
``keras.ops.dot_product_attention`` eager and under XLA), in one process with the
implementations interleaved, and records time, GFLOP/s, the fraction of a same-run
GEMM, peak extra memory and the error against a float64 reference. The results
shipped with the package (``attnbook/data/bench/*.json``) are what chapter 11 plots:

>>> from attnbook import bench
>>> bench.list_results()                       # doctest: +SKIP
['cpu-2026-11-21']
# the newest shipped run, a dict with "meta" and "results"
>>> res = bench.load_results()

Importing this package imports nothing heavy; the frameworks are imported when the
suite runs.
"""

from __future__ import annotations

import json
from importlib import resources

__all__ = ["list_results", "load_results", "main"]


def _data_dir():
    return resources.files("attnbook") / "data" / "bench"


def list_results():
    """Names of the result files shipped in ``attnbook/data/bench`` (without
    ``.json``), oldest first.

    Names are ``<device>-<YYYY-MM-DD>``, so sorting by name sorts each device's runs
    by date.
    """
    folder = _data_dir()
    if not folder.is_dir():
        return []
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))


def load_results(name=None):
    """A shipped result file as a dict ``{"meta": {...}, "results": [...]}`` (schema
    1, see the README of the suite).

    Args:
        name: a name from :func:`list_results` (with or without ``.json``); ``None``
            loads the newest CPU run, or the newest run of any device when there is
            no CPU run.

    Raises:
        FileNotFoundError: no shipped file has that name (the message lists the names
            that exist).
    """
    if name is not None and not isinstance(name, str):
        raise TypeError(
            f"name must be a string from list_results() or None, got {name!r}"
        )
    names = list_results()
    if name is None:
        if not names:
            raise FileNotFoundError(
                "no benchmark results are shipped in attnbook/data/bench"
            )
        cpu = [n for n in names if n.startswith("cpu-")]
        name = (cpu or names)[-1]
    name = name[:-5] if name.endswith(".json") else name
    if name not in names:
        raise FileNotFoundError(
            f"no benchmark results named {name!r}; shipped: "
            f"{', '.join(names) or 'none'}"
        )
    return json.loads((_data_dir() / f"{name}.json").read_text())


def main(argv=None):
    """Run the suite from the command line (``python -m attnbook.bench``); returns
    the results dict."""
    from .suite import main as _main

    return _main(argv)
