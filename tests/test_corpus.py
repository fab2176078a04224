"""The corpus written for the semantic-search section: shipped with the package,
consistent, labelled."""

from collections import Counter

import pytest

from attnbook.datasets import corpus


@pytest.fixture(scope="module")
def data():
    return corpus.load_corpus()


def test_size_and_topics(data):
    assert 60 <= len(data) <= 120
    counts = Counter(data.topics)
    assert set(counts) == set(corpus.TOPICS)
    assert min(counts.values()) >= 8  # every topic has enough documents to rank


def test_ids_unique_and_lookup(data):
    assert len(set(data.ids)) == len(data)
    first = data.documents[0]
    assert data[first.id] is first
    with pytest.raises(KeyError):
        data["no-such-id"]


def test_documents_are_short_english_sentences(data):
    for d in data.documents:
        assert d.text.isascii() and 20 <= len(d.text) <= 200, d
        assert d.text[0].isupper() and d.text.endswith("."), d


def test_queries_are_labelled_with_existing_documents(data):
    assert len(data.queries) >= 10
    ids = set(data.ids)
    for q in data.queries:
        assert q.relevant and set(q.relevant) <= ids, q
        assert q.topic in corpus.TOPICS
        # A query's answers are about the query's topic.
        assert {data[r].topic for r in q.relevant} == {q.topic}, q
    assert len({q.id for q in data.queries}) == len(data.queries)


def test_texts_are_unique(data):
    assert len(set(data.texts)) == len(data)
    assert not set(data.texts) & {q.text for q in data.queries}
