"""attnbook.plotting draws Chinese and Japanese text with a CJK fallback font, or
says what to install.

Without a CJK font these skip locally and fail in CI (``CI=true``), where .ci/run
installs fonts-noto-cjk.
"""

from __future__ import annotations

import io
import os
import warnings

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from attnbook import plotting as ap  # noqa: E402

DATE = "2026年11月21日 星期六"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _need_cjk_font():
    if ap.cjk_font() is None:
        if IN_CI:
            pytest.fail(
                "no CJK font installed (apt-get install fonts-noto-cjk; required when "
                "CI=true)"
            )
        pytest.skip("no CJK font installed (apt-get install fonts-noto-cjk)")


def _draw_and_collect(draw):
    """Draw, render to PNG, and return the messages of the warnings that came up
    (matplotlib warns per glyph)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig = draw()
        fig = getattr(fig, "figure", fig)
        fig.savefig(io.BytesIO(), format="png")
        plt.close(fig)
    return [str(w.message) for w in caught]


def test_the_fallback_is_added_once_and_keeps_latin_text_in_the_default_font():
    _need_cjk_font()
    with matplotlib.rc_context({"font.family": ["sans-serif"]}):
        family = ap.use_cjk_font()
        assert family in ap.CJK_FONTS
        assert ap.use_cjk_font() == family
        # appended once, after the default family that draws Latin text
        assert list(matplotlib.rcParams["font.family"]) == ["sans-serif", family]


def test_missing_glyphs_asks_the_fonts_matplotlib_would_use():
    _need_cjk_font()
    assert ap.missing_glyphs(DATE, ["DejaVu Sans"]) == sorted(set("年月日星期六"))
    assert ap.missing_glyphs("2026-11-21 Saturday", ["DejaVu Sans"]) == []
    assert ap.missing_glyphs(DATE, ["DejaVu Sans", ap.cjk_font()]) == []


def test_cjk_labels_are_drawn_without_missing_glyphs():
    _need_cjk_font()
    with matplotlib.rc_context():
        messages = _draw_and_collect(
            lambda: ap.heatmap(
                np.eye(3), list("年月日"), ["2026", "11", "21"], title=DATE
            )
        )
    assert not [m for m in messages if "missing from font" in m], messages


def test_without_a_cjk_font_one_warning_names_the_package(monkeypatch):
    monkeypatch.setattr(
        ap, "_cjk_state", {"family": None, "looked": True, "warned": False}
    )
    with matplotlib.rc_context():
        latin = _draw_and_collect(lambda: ap.heatmap(np.eye(2), ["a", "b"], ["c", "d"]))
        assert not [m for m in latin if "CJK" in m]
        first = _draw_and_collect(
            lambda: ap.heatmap(np.eye(3), list("年月日"), list("abc"))
        )
        again = _draw_and_collect(
            lambda: ap.show_mask(np.eye(3, dtype=bool), list("年月日"), list("abc"))
        )
    ours = [m for m in first if "no CJK font is installed" in m]
    assert len(ours) == 1 and "fonts-noto-cjk" in ours[0], first
    assert not [m for m in again if "no CJK font is installed" in m]  # once per process
