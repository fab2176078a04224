"""Semantic search with MiniLM sentence embeddings computed by attnbook: embed, rank by cosine, evaluate.

Embeddings are L2-normalised, so the cosine similarity of two texts is the dot product of their embeddings; a query
against a corpus is one matrix-vector product. Ranking the corpus by that score and keeping the top ``k`` is hard
attention: the same ``q . k`` scores as attention, with a top-k in place of the softmax. Results are NumPy arrays
whatever framework computed the embeddings.
"""

from __future__ import annotations

import importlib

import numpy as np

__all__ = ["embed", "cosine_scores", "top_k", "search", "precision_at_k", "recall_at_k", "reciprocal_rank",
           "evaluate"]


def embed(model, texts, backend="numpy", batch_size=32, device=None, params=None):
    """Sentence embeddings ``(N, D)`` (float32 NumPy, unit rows) of ``texts`` with attnbook's MiniLM forward.

    ``model`` is what ``attnbook.minilm.load()`` returns; ``backend`` is ``"numpy"``, ``"torch"`` or
    ``"tensorflow"``. Texts are processed ``batch_size`` at a time, each batch padded to its longest text.
    ``params`` may pass parameters already converted with ``from_numpy`` (to avoid converting them per call);
    ``device`` is given to ``from_numpy`` otherwise.
    """
    from ..plotting import to_numpy

    mod = importlib.import_module(f"attnbook.minilm.{backend}")
    if params is None:
        params = mod.from_numpy(model.params, device)
    texts = [texts] if isinstance(texts, str) else list(texts)
    out = []
    for start in range(0, len(texts), batch_size):
        b = model.tokenize(texts[start:start + batch_size])
        e = mod.sentence_embeddings(params, b.input_ids, b.attention_mask, b.token_type_ids,
                                    num_heads=model.num_heads, eps=model.eps)
        out.append(to_numpy(e))
    return np.concatenate(out) if out else np.zeros((0, model.config["hidden_size"]), np.float32)


def cosine_scores(queries, documents):
    """Cosine similarity ``(Q, N)`` between the rows of ``queries (Q, D)`` and ``documents (N, D)``."""
    q = queries / np.linalg.norm(queries, axis=-1, keepdims=True)
    d = documents / np.linalg.norm(documents, axis=-1, keepdims=True)
    return q @ d.T


def top_k(scores, k):
    """Indices ``(..., k)`` of the ``k`` largest scores along the last axis, best first (ties: lower index first)."""
    order = np.argsort(-scores, axis=-1, kind="stable")
    return order[..., :k]


def search(query_embeddings, doc_embeddings, ids, k=5):
    """For each query, the ``k`` best ``(id, score)`` pairs, best first."""
    scores = cosine_scores(np.atleast_2d(query_embeddings), doc_embeddings)
    return [[(ids[j], float(row[j])) for j in idx] for row, idx in zip(scores, top_k(scores, k))]


def precision_at_k(ranked_ids, relevant, k):
    """Fraction of the first ``k`` ranked ids that are relevant."""
    return sum(r in set(relevant) for r in ranked_ids[:k]) / k


def recall_at_k(ranked_ids, relevant, k):
    """Fraction of the relevant ids found among the first ``k`` ranked ids."""
    return sum(r in set(relevant) for r in ranked_ids[:k]) / len(relevant)


def reciprocal_rank(ranked_ids, relevant):
    """``1 / rank`` of the first relevant id in the ranking (rank 1 = first), 0 if none is ranked."""
    for rank, r in enumerate(ranked_ids, 1):
        if r in set(relevant):
            return 1.0 / rank
    return 0.0


def evaluate(scores, ids, queries, ks=(1, 3)):
    """Mean precision@k, recall@k (for each ``k`` in ``ks``) and MRR over labelled queries.

    ``scores (Q, N)`` ranks the documents ``ids`` for each query; a score of ``-inf`` means "not retrieved" (a
    keyword engine returns no document that shares no word with the query), so such a document is never counted as
    found, whatever its position among the ties. ``queries`` have a ``relevant`` tuple of ids
    (``attnbook.datasets.corpus.Query``). Returns a dict such as ``{"P@1": ..., "R@3": ..., "MRR": ...}``.
    """
    ranked = [[ids[j] for j in order if scores[i, j] > -np.inf]
              for i, order in enumerate(top_k(scores, scores.shape[-1]))]
    result = {}
    for k in ks:
        result[f"P@{k}"] = float(np.mean([precision_at_k(r, q.relevant, k) for r, q in zip(ranked, queries)]))
        result[f"R@{k}"] = float(np.mean([recall_at_k(r, q.relevant, k) for r, q in zip(ranked, queries)]))
    result["MRR"] = float(np.mean([reciprocal_rank(r, q.relevant) for r, q in zip(ranked, queries)]))
    return result
