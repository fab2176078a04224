"""Semantic search with MiniLM sentence embeddings computed by attnbook: embed, rank
by cosine, evaluate.

Embeddings are L2-normalised, so the cosine similarity of two texts is the dot
product of their embeddings; a query against a corpus is one matrix-vector product.
Ranking the corpus by that score and keeping the top ``k`` is hard
attention: the same ``q . k`` scores as attention, with a top-k in place of the softmax.
Results are NumPy arrays whatever framework computed the embeddings.

The ranking metrics take ``k >= 1`` (``k = 0`` raises ``ValueError``) and a non-empty
set of relevant ids: a query that no document answers has no precision, recall or
reciprocal rank (recall would divide by 0), and averaging a made-up 0 into a mean
would hide a labelling mistake, so an empty ``relevant`` raises ``ValueError`` too.
"""

from __future__ import annotations

import importlib

import numpy as np

from .. import _checks, _spec
from . import MiniLM

__all__ = [
    "embed",
    "cosine_scores",
    "top_k",
    "search",
    "precision_at_k",
    "recall_at_k",
    "reciprocal_rank",
    "evaluate",
]

_BACKENDS = ("numpy", "torch", "tensorflow")


def _real_array(name, x, ranks, layout):
    """``x`` (an array of any framework) as a NumPy array of real numbers (integers
    become float64) with one of the ``ranks``; ``layout`` names the shape in the
    message."""
    from ..plotting import to_numpy

    try:
        a = to_numpy(x)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be an array of real numbers: {err}") from None
    if a.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be an array of real numbers, got dtype {a.dtype}")
    if a.ndim not in ranks:
        raise ValueError(f"{name} must have shape {layout}, got shape {a.shape}")
    return a if a.dtype.kind == "f" else a.astype(np.float64)


def _id_list(name, ids):
    """A sequence of ids (not a string, whose characters would be taken for ids) as a
    list."""
    if isinstance(ids, (str, bytes)) or not hasattr(ids, "__iter__"):
        raise TypeError(
            f"{name} must be a sequence of ids (a list or tuple), got "
            f"{type(ids).__name__}"
            + (f"; for one id write ({ids!r},)" if isinstance(ids, str) else "")
        )
    return list(ids)


def _ranked_and_relevant(ranked_ids, relevant):
    ranked, relevant = (
        _id_list("ranked_ids", ranked_ids),
        _id_list("relevant", relevant),
    )
    try:
        relevant = set(relevant)
        unique = len(set(ranked)) == len(ranked)
    except TypeError as err:  # unhashable ids
        raise TypeError(
            f"ranked_ids and relevant must hold hashable ids (strings, integers): {err}"
        ) from None
    if not unique:
        raise ValueError(
            "ranked_ids must not repeat an id: a ranking lists each document once"
        )
    if not relevant:
        raise ValueError(
            "relevant is empty: a query with no relevant document has no "
            "precision, recall or "
            "reciprocal rank"
        )
    return ranked, relevant


def embed(model, texts, backend="numpy", batch_size=32, device=None, params=None):
    """Sentence embeddings ``(N, D)`` (float32 NumPy, unit rows) of ``texts`` with
    attnbook's MiniLM forward.

    ``model`` is what ``attnbook.minilm.load()`` returns; ``backend`` is ``"numpy"``,
    ``"torch"`` or ``"tensorflow"``. Texts are processed ``batch_size`` at a time,
    each batch padded to its longest text. ``params`` may pass parameters already
    converted with ``from_numpy`` (to avoid converting them per call); ``device`` is
    given to ``from_numpy`` otherwise. An empty list of texts gives a ``(0, D)``
    array.
    """
    from ..plotting import to_numpy

    if not isinstance(model, MiniLM):
        raise TypeError(
            f"model must be an attnbook.minilm.MiniLM (from "
            f"attnbook.minilm.load()), got "
            f"{type(model).__name__}"
        )
    _checks.string("backend", backend, _BACKENDS)
    batch_size = _checks.positive_int("batch_size", batch_size)
    texts = _checks.texts("texts", texts)
    pooling = model.config.get("pooling") or {}
    modes = sorted(k for k, v in pooling.items() if k.startswith("pooling_mode_") and v)
    if pooling and modes != ["pooling_mode_mean_tokens"]:
        raise ValueError(
            f"the model's 1_Pooling/config.json asks for {modes}; "
            f"sentence_embeddings implements mean "
            "pooling (pooling_mode_mean_tokens) only"
        )
    mod = importlib.import_module(f"attnbook.minilm.{backend}")
    if params is None:
        params = mod.from_numpy(model.params, device)
    out = []
    for start in range(0, len(texts), batch_size):
        b = model.tokenize(texts[start : start + batch_size])
        e = mod.sentence_embeddings(
            params,
            b.input_ids,
            b.attention_mask,
            b.token_type_ids,
            num_heads=model.num_heads,
            eps=model.eps,
        )
        out.append(to_numpy(e))
    return (
        np.concatenate(out)
        if out
        else np.zeros((0, model.config["hidden_size"]), np.float32)
    )


def cosine_scores(queries, documents):
    """Cosine similarity ``(Q, N)`` between the rows of ``queries (Q, D)`` and
    ``documents (N, D)`` (``(N,)`` for one query ``(D,)``), as float64 NumPy; arrays
    of any framework.

    ``ValueError`` for NaN or infinite entries and for a row of norm 0, whose cosine
    similarity is undefined.
    """
    q = _real_array("queries", queries, (1, 2), "(Q, D) or (D,)")
    d = _real_array("documents", documents, (2,), "(N, D)")
    if q.shape[-1] != d.shape[-1]:
        raise ValueError(
            f"queries {q.shape} and documents {d.shape} must have the same width D"
        )
    for name, a in (("queries", q), ("documents", d)):
        if not np.isfinite(a).all():
            raise ValueError(f"{name} must be finite, got NaN or infinite entries")
        zero = np.flatnonzero(np.linalg.norm(np.atleast_2d(a), axis=-1) == 0)
        if zero.size:
            raise ValueError(
                f"{name} row {zero[0]} has norm 0: its cosine similarity is undefined"
            )
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    d = d / np.linalg.norm(d, axis=-1, keepdims=True)
    return q @ d.T


def top_k(scores, k):
    """Indices ``(..., k)`` of the ``k`` largest scores along the last axis, best
    first (ties: lower index first).

    ``k`` is a positive integer; when it exceeds the number ``N`` of scores, all
    ``N`` are returned, ranked. Scores may be ``-inf`` (ranked last) but not NaN.
    """
    scores = _real_array("scores", scores, range(1, 65), "(..., N)")
    k = _checks.positive_int("k", k)
    if np.isnan(scores).any():
        raise ValueError(
            "scores must not be NaN (use -inf for a document that is not retrieved)"
        )
    order = np.argsort(-scores, axis=-1, kind="stable")
    return order[..., :k]


def search(query_embeddings, doc_embeddings, ids, k=5):
    """For each query, the ``k`` best ``(id, score)`` pairs, best first."""
    scores = cosine_scores(np.atleast_2d(query_embeddings), doc_embeddings)
    ids = _document_ids(ids, scores.shape[-1])  # one id per document
    return [
        [(ids[j], float(row[j])) for j in idx]
        for row, idx in zip(scores, top_k(scores, k), strict=False)
    ]


def _document_ids(ids, n):
    ids = _id_list("ids", ids)
    if len(ids) != n:
        raise ValueError(f"ids has {len(ids)} entries for {n} documents")
    return ids


def precision_at_k(ranked_ids, relevant, k):
    """Fraction of the first ``k`` ranked ids that are relevant (``k >= 1``; a
    ranking shorter than ``k`` counts its missing places as not relevant).
    ``relevant`` must not be empty (see the module docstring)."""
    ranked, relevant = _ranked_and_relevant(ranked_ids, relevant)
    k = _checks.positive_int("k", k)
    return sum(r in relevant for r in ranked[:k]) / k


def recall_at_k(ranked_ids, relevant, k):
    """Fraction of the relevant ids (a set: a repeated id counts once) found among
    the first ``k`` ranked ids (``k >= 1``). ``relevant`` must not be empty (see the
    module docstring)."""
    ranked, relevant = _ranked_and_relevant(ranked_ids, relevant)
    k = _checks.positive_int("k", k)
    return sum(r in relevant for r in ranked[:k]) / len(relevant)


def reciprocal_rank(ranked_ids, relevant):
    """``1 / rank`` of the first relevant id in the ranking (rank 1 = first), 0 if
    none is ranked. ``relevant`` must not be empty (see the module docstring)."""
    ranked, relevant = _ranked_and_relevant(ranked_ids, relevant)
    for rank, r in enumerate(ranked, 1):
        if r in relevant:
            return 1.0 / rank
    return 0.0


def evaluate(scores, ids, queries, ks=(1, 3)):
    """Mean precision@k, recall@k (for each ``k`` in ``ks``) and MRR over labelled
    queries.

    ``scores (Q, N)`` ranks the documents ``ids`` for each query; a score of ``-inf``
    means "not retrieved" (a keyword engine returns no document that shares no word
    with the query), so such a document is never counted as found, whatever its
    position among the ties. ``queries`` have a ``relevant`` tuple of ids
    (``attnbook.datasets.corpus.Query``). Returns a dict such as ``{"P@1": ...,
    "R@3": ..., "MRR": ...}``.

    ``ValueError`` when the sizes disagree (``Q`` queries, ``N`` unique ids), for no
    query, NaN scores, a ``k`` below 1, and a query whose relevant ids are empty or
    not all among ``ids``.
    """
    scores = _real_array("scores", scores, (2,), "(Q, N)")
    ids = _document_ids(ids, scores.shape[-1])
    if len(set(ids)) != len(ids):
        raise ValueError(
            "ids must be unique: two documents with one id cannot be told "
            "apart in a ranking"
        )
    queries = list(queries) if not isinstance(queries, str) else [queries]
    if not queries or not ids:
        raise ValueError(
            f"evaluate needs at least one query and one document, got "
            f"scores of shape {scores.shape}"
        )
    if len(queries) != scores.shape[0]:
        raise ValueError(
            f"scores has {scores.shape[0]} rows for {len(queries)} queries"
        )
    if isinstance(ks, (str, bytes)) or not hasattr(ks, "__iter__"):
        raise TypeError(
            f"ks must be a sequence of positive integers such as (1, 3), got {ks!r}"
        )
    ks = [
        _spec.check_integer("ks", k, least=1, what="a sequence of positive integers")
        for k in ks
    ]
    known = set(ids)
    for i, q in enumerate(queries):
        if not hasattr(q, "relevant"):
            raise TypeError(
                f"queries must have a .relevant tuple of ids "
                f"(attnbook.datasets.corpus.Query), got "
                f"{type(q).__name__} at position {i}"
            )
        relevant = _id_list(f"queries[{i}].relevant", q.relevant)
        if not relevant:
            raise ValueError(
                f"queries[{i}].relevant is empty: a query with no relevant "
                f"document has no precision, "
                "recall or reciprocal rank"
            )
        unknown = [r for r in relevant if r not in known]
        if unknown:
            raise ValueError(
                f"queries[{i}].relevant has ids that are not among ids: {unknown[:5]}"
            )
    ranked = [
        [ids[j] for j in order if scores[i, j] > -np.inf]
        for i, order in enumerate(top_k(scores, scores.shape[-1]))
    ]
    result = {}
    for k in ks:
        result[f"P@{k}"] = float(
            np.mean(
                [
                    precision_at_k(r, q.relevant, k)
                    for r, q in zip(ranked, queries, strict=False)
                ]
            )
        )
        result[f"R@{k}"] = float(
            np.mean(
                [
                    recall_at_k(r, q.relevant, k)
                    for r, q in zip(ranked, queries, strict=False)
                ]
            )
        )
    result["MRR"] = float(
        np.mean(
            [
                reciprocal_rank(r, q.relevant)
                for r, q in zip(ranked, queries, strict=False)
            ]
        )
    )
    return result
