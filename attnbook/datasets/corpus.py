"""A small corpus written for the book's semantic-search section, with labelled
queries.

84 short English documents, 12 on each of seven clearly distinct topics (cooking,
astronomy, football, programming, medicine, music, travel), and 16 queries, each with
the ids of the documents that answer it. Many queries are paraphrases that share no
content word with their answer, which is where embeddings beat word matching. The
data ship with the package (``attnbook/data/search_corpus.jsonl``); nothing is
downloaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources

__all__ = ["Document", "Query", "Corpus", "TOPICS", "load_corpus"]

#: The seven topics, in the order the documents are stored.
TOPICS = (
    "cooking",
    "astronomy",
    "football",
    "programming",
    "medicine",
    "music",
    "travel",
)


@dataclass(frozen=True)
class Document:
    """One document: ``id`` such as ``"cook-01"``, its ``topic`` (one of ``TOPICS``)
    and its ``text``."""

    id: str
    topic: str
    text: str


@dataclass(frozen=True)
class Query:
    """A labelled query: ``text``, the ``topic`` it is about and the ids of the
    documents that answer it."""

    id: str
    topic: str
    text: str
    relevant: tuple


@dataclass(frozen=True)
class Corpus:
    """``documents`` and ``queries`` as tuples, with the documents' ``ids``,
    ``texts`` and ``topics`` as lists."""

    documents: tuple
    queries: tuple

    @property
    def ids(self):
        return [d.id for d in self.documents]

    @property
    def texts(self):
        return [d.text for d in self.documents]

    @property
    def topics(self):
        return [d.topic for d in self.documents]

    def __len__(self):
        return len(self.documents)

    def __getitem__(self, doc_id):
        """The document with id ``doc_id`` (``KeyError`` if there is none)."""
        for d in self.documents:
            if d.id == doc_id:
                return d
        raise KeyError(
            f"no document has the id {doc_id!r} (ids are strings such as "
            f"'cook-01'; see Corpus.ids)"
        )


def load_corpus() -> Corpus:
    """Read the corpus shipped with attnbook and check it: ids unique, topics known,
    every relevant id exists."""
    text = (
        resources.files("attnbook")
        .joinpath("data/search_corpus.jsonl")
        .read_text(encoding="utf-8")
    )
    docs, queries = [], []
    for line in text.splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        if rec["kind"] == "document":
            docs.append(Document(rec["id"], rec["topic"], rec["text"]))
        elif rec["kind"] == "query":
            queries.append(
                Query(rec["id"], rec["topic"], rec["text"], tuple(rec["relevant"]))
            )
        else:
            raise ValueError(f"unknown record kind {rec['kind']!r}")
    ids = [d.id for d in docs]
    if len(set(ids)) != len(ids):
        raise ValueError("duplicate document ids in the corpus")
    unknown = {d.topic for d in docs} - set(TOPICS)
    missing = {r for q in queries for r in q.relevant} - set(ids)
    if unknown or missing:
        raise ValueError(
            f"corpus is inconsistent: unknown topics {unknown}, unknown "
            f"relevant ids {missing}"
        )
    return Corpus(tuple(docs), tuple(queries))
