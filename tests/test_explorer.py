"""attnbook.plotting.explore: the HTML it generates (data, escaping, shapes), its
errors.

The browser half (select a layer and a head, hover a token: the keys show exactly
that row of the embedded data) is in ``tests/test_site.py``, on the MiniLM chapter's
explorer.
"""

from __future__ import annotations

import html.parser
import json
import re

import numpy as np
import pytest

from attnbook import plotting as ap


def _weights(shape, seed=0):
    w = np.random.default_rng(seed).random(shape) ** 4
    return w / w.sum(-1, keepdims=True)


class _Parts(html.parser.HTMLParser):
    """The elements, attributes and script texts of a fragment, as a browser's parser
    sees them."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags, self.scripts, self._script = [], [], None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._script = (dict(attrs), [])

    def handle_endtag(self, tag):
        if tag == "script" and self._script is not None:
            self.scripts.append((self._script[0], "".join(self._script[1])))
            self._script = None

    def handle_data(self, data):
        if self._script is not None:
            self._script[1].append(data)


def _parse(fragment):
    parts = _Parts()
    parts.feed(fragment)
    parts.close()
    return parts


def _embedded(fragment):
    """The JSON the page's script reads (the text of the application/json script,
    parsed)."""
    (data,) = [
        text
        for attrs, text in _parse(fragment).scripts
        if attrs.get("type") == "application/json"
    ]
    return json.loads(data)


def test_self_attention_embeds_every_layer_and_head_rounded():
    w = _weights((2, 3, 5, 5))
    tokens = ["[CLS]", "the", "cat", "sat", "[SEP]"]
    e = ap.explore(tokens, w, title="a title")
    assert e.shape == (2, 3, 5, 5)
    data = _embedded(e._repr_html_())
    assert data == e.data
    assert data["queries"] == data["keys"] == tokens
    assert data["layers"] == ["layer 0", "layer 1"] and data["heads"] == [
        "head 0",
        "head 1",
        "head 2",
    ]
    got = np.array(data["weights"])
    assert got.shape == (2, 3, 5, 5)
    np.testing.assert_allclose(got, w, atol=0.5e-3 + 1e-12)  # 3 decimals by default
    assert np.array_equal(got, np.round(w, 3))
    assert "a title" in e.to_html()


def test_one_layer_and_names():
    w = _weights((4, 3, 3))
    e = ap.explore(
        list("abc"),
        w,
        head_names=["h0", "h1", "h2", "h3"],
        layer_names=["only"],
        precision=2,
    )
    data = _embedded(e.to_html())
    assert (
        e.shape == (1, 4, 3, 3)
        and data["heads"] == ["h0", "h1", "h2", "h3"]
        and data["layers"] == ["only"]
    )
    assert np.array_equal(np.array(data["weights"])[0], np.round(w, 2))


def test_cross_attention_takes_a_pair_of_token_lists():
    w = _weights((1, 2, 3, 4))
    e = ap.explore((["q1", "q2", "q3"], ["k1", "k2", "k3", "k4"]), w)
    data = _embedded(e.to_html())
    assert data["queries"] == ["q1", "q2", "q3"] and data["keys"] == [
        "k1",
        "k2",
        "k3",
        "k4",
    ]
    # A self-attention list of exactly two tokens is not mistaken for a pair.
    assert ap.explore(["ab", "cd"], _weights((1, 1, 2, 2))).data["queries"] == [
        "ab",
        "cd",
    ]


def test_frameworks_and_compact_numbers():
    torch = pytest.importorskip("torch")
    w = np.zeros((1, 1, 2, 2))
    w[0, 0] = [[1.0, 0.0], [0.25, 0.75]]
    e = ap.explore(["x", "y"], torch.tensor(w, dtype=torch.float32, requires_grad=True))
    text = [
        t for a, t in _parse(e.to_html()).scripts if a.get("type") == "application/json"
    ][0]
    assert '"weights":[[[[1,0],[0.25,0.75]]]]' in text  # no 0.250, no 1.000
    assert e.data["weights"] == [[[[1, 0], [0.25, 0.75]]]]


NASTY = [
    "</script><script>alert(1)</script>",
    "<!--",
    "a & b",
    '"quoted"',
    "'single'",
    "日期 2026年",
    "\u2028",
    "\\",
    "<b>bold</b>",
    "]]>",
]


def test_token_text_is_data_never_markup():
    n = len(NASTY)
    e = ap.explore(
        NASTY,
        _weights((1, 1, n, n)),
        title='<img src=x onerror="alert(1)"> & 年',
        head_names=["<i>h</i>"],
        layer_names=["</div>"],
    )
    fragment = e.to_html()
    parts = _parse(fragment)
    # One explorer element, one data script, one code script: no token created an
    # element or ended a script.
    assert [t for t, _ in parts.tags] == [
        "div",
        "style",
        "div",
        "p",
        "script",
        "script",
    ]
    data = _embedded(fragment)
    assert (
        data["queries"] == NASTY
        and data["heads"] == ["<i>h</i>"]
        and data["layers"] == ["</div>"]
    )
    assert data["title"] == '<img src=x onerror="alert(1)"> & 年'
    assert "</script" not in parts.scripts[0][1] and "<" not in parts.scripts[0][1]
    assert parts.scripts[0][
        1
    ].isascii()  # the data reads the same whatever the page's encoding
    # The title is escaped text in the visible heading.
    assert "&lt;img src=x" in fragment and "<img src=x" not in fragment


def test_element_ids_are_unique():
    w = _weights((1, 1, 2, 2))
    a, b = ap.explore(["x", "y"], w), ap.explore(["x", "y"], w)
    assert a.id != b.id
    assert re.fullmatch(r"[a-z0-9-]+", a.id)
    assert f'id="{a.id}"' in a.to_html() and f'getElementById("{a.id}")' in a.to_html()


def test_save_writes_a_standalone_page(tmp_path):
    path = ap.explore(["x", "y"], _weights((1, 1, 2, 2)), title="t").save(
        tmp_path / "e.html"
    )
    page = path.read_text(encoding="utf8")
    assert page.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in page
    assert (
        "http://" not in page.replace("http://www.w3.org/2000/svg", "")
        and "https://" not in page
    )  # no CDN


ERRORS = {
    "2-D weights": (
        lambda: ap.explore(["a", "b"], np.eye(2)),
        ValueError,
        "(L, H, Lq, Lk)",
    ),
    "5-D weights": (
        lambda: ap.explore(["a"], np.ones((1, 1, 1, 1, 1))),
        ValueError,
        "(L, H, Lq, Lk)",
    ),
    "no head": (
        lambda: ap.explore(["a"], np.ones((1, 0, 1, 1))),
        ValueError,
        "at least one",
    ),
    "strings as weights": (
        lambda: ap.explore(["a"], np.array([[["x"]]])),
        TypeError,
        "weights",
    ),
    "NaN": (
        lambda: ap.explore(["a"], np.full((1, 1, 1), np.nan)),
        ValueError,
        "finite",
    ),
    "above 1 (scores, not weights)": (
        lambda: ap.explore(["a", "b"], np.full((1, 2, 2), 3.0)),
        ValueError,
        "[0, 1]",
    ),
    "negative": (
        lambda: ap.explore(["a", "b"], np.full((1, 2, 2), -0.5)),
        ValueError,
        "[0, 1]",
    ),
    "too few tokens": (
        lambda: ap.explore(["a"], _weights((1, 2, 2))),
        ValueError,
        "tokens",
    ),
    "a string for tokens": (
        lambda: ap.explore("ab", _weights((1, 2, 2))),
        TypeError,
        "tokens",
    ),
    "a non-string token": (
        lambda: ap.explore(["a", 1], _weights((1, 2, 2))),
        TypeError,
        "tokens",
    ),
    "Lq != Lk without a pair": (
        lambda: ap.explore(["a", "b"], _weights((1, 2, 3))),
        ValueError,
        "(queries, keys)",
    ),
    "pair of the wrong lengths": (
        lambda: ap.explore((["a"], ["b"]), _weights((1, 1, 2))),
        ValueError,
        "keys",
    ),
    "head_names too short": (
        lambda: ap.explore(["a", "b"], _weights((2, 2, 2)), head_names=["h"]),
        ValueError,
        "head_names",
    ),
    "layer_names a string": (
        lambda: ap.explore(["a", "b"], _weights((2, 2, 2)), layer_names="L"),
        TypeError,
        "layer_names",
    ),
    "precision 0": (
        lambda: ap.explore(["a", "b"], _weights((1, 2, 2)), precision=0),
        ValueError,
        "precision",
    ),
    "precision 2.5": (
        lambda: ap.explore(["a", "b"], _weights((1, 2, 2)), precision=2.5),
        TypeError,
        "precision",
    ),
    "title a number": (
        lambda: ap.explore(["a", "b"], _weights((1, 2, 2)), title=3),
        TypeError,
        "title",
    ),
    "more than a page should hold": (
        lambda: ap.explore([str(i) for i in range(300)], np.zeros((4, 4, 300, 300))),
        ValueError,
        "select layers",
    ),
}


@pytest.mark.parametrize("case", ERRORS)
def test_bad_inputs_raise_clear_errors(case):
    call, exc, words = ERRORS[case]
    with pytest.raises(exc) as info:
        call()
    assert words in str(info.value), str(info.value)
