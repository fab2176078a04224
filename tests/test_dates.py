"""The date-translation data set: determinism, correctness of every pair, disjoint
splits, the vocabulary."""

import datetime

import numpy as np
import pytest

from attnbook.datasets import dates as D


def test_same_seed_same_pairs_other_seed_other_pairs():
    a = D.generate(200, seed=3, intervals=0.3)
    assert a == D.generate(200, seed=3, intervals=0.3)
    assert a != D.generate(200, seed=4, intervals=0.3)


def test_targets_are_iso_dates_and_weekdays_are_right():
    weekday_names = {
        lang: D._NAMES[lang].get("weekday", []) + D._NAMES[lang].get("wkd", [])
        for lang in D.LANGUAGES
        if lang in D._NAMES
    }
    pairs = D.generate(3000, seed=0, intervals=0.25)
    for p in pairs:
        ends = p.target.split("/")
        assert len(ends) == (2 if p.is_interval else 1)
        days = [datetime.date.fromisoformat(e) for e in ends]
        assert all(D.FIRST_DATE <= d <= D.LAST_DATE for d in days)
        if p.is_interval:
            assert days[0] < days[1]
        else:
            d = days[0]
            names = D._NAMES.get(p.language, {})
            # the written weekday, if any, is the true one (and no other weekday name of
            # the language appears)
            for key in ("weekday", "wkd"):
                if (
                    key in names
                    and "{" + key + "}"
                    in dict((n, t) for n, _, t in D.FORMATS)[p.format]
                ):
                    assert names[key][d.weekday()] in p.source
            assert str(d.year) in p.source or f"{d.year % 100:02d}" in p.source
    assert weekday_names["en"][5] == "Saturday"


@pytest.mark.parametrize(
    "fmt, text",
    [
        ("en_weekday_the_dth_of_month_y", "Saturday, the 21st of November 2026"),
        ("en_mon_d_y", "Nov 21, 2026"),
        ("num_dd.mm.yy", "21.11.26"),
        ("fr_weekday_d_month_y", "samedi 21 novembre 2026"),
        ("de_weekday_der_d_month_y", "Samstag, der 21. November 2026"),
        ("es_el_weekday_d_de_month_de_y", "el sábado 21 de noviembre de 2026"),
        ("zh_y_m_d_weekday", "2026年11月21日 星期六"),
        ("ja_y_m_d_wkd", "2026年11月21日(土)"),
    ],
)
def test_render_known_examples(fmt, text):
    assert D.render(datetime.date(2026, 11, 21), fmt) == text


def test_ordinals_and_french_first():
    assert [D._ordinal_en(d) for d in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 31)] == [
        "1st",
        "2nd",
        "3rd",
        "4th",
        "11th",
        "12th",
        "13th",
        "21st",
        "22nd",
        "23rd",
        "31st",
    ]
    assert D.render(datetime.date(2026, 11, 1), "fr_d_month_y") == "1er novembre 2026"
    assert (
        D.render_interval(
            datetime.date(2026, 11, 21), datetime.date(2027, 3, 3), "de_d_month_y"
        )
        == "vom 21. November 2026 bis 3. März 2027"
    )


@pytest.mark.parametrize("by", ["source", "date"])
def test_splits_are_disjoint(by):
    train, valid, test = D.make_splits(3000, 300, 300, seed=1, by=by, intervals=0.2)
    assert (len(train), len(valid), len(test)) == (3000, 300, 300)
    sources = [{p.source for p in s} for s in (train, valid, test)]
    assert sum(map(len, sources)) == 3600  # unique within and across splits
    if by == "date":
        days = [
            {e for p in s for e in p.target.split("/")} for s in (train, valid, test)
        ]
        assert (
            not (days[0] & days[2])
            and not (days[0] & days[1])
            and not (days[1] & days[2])
        )


def test_length_range_is_respected():
    pairs = D.generate(300, seed=2, min_len=30, max_len=45, intervals=0.5)
    assert all(30 <= len(p.source) <= 45 for p in pairs)
    with pytest.raises(ValueError):
        D.generate(5, seed=0, min_len=500)


def test_filters_and_bad_arguments():
    assert {p.language for p in D.generate(200, languages=["fr", "de"])} == {"fr", "de"}
    with pytest.raises(ValueError, match="two-digit"):
        D.generate(5, start=datetime.date(1900, 1, 1))
    assert len(D.generate(5, start=datetime.date(1900, 1, 1), languages=["en"])) == 5
    with pytest.raises(ValueError):
        D.generate(5, formats=["no_such_format"])
    with pytest.raises(ValueError):
        D.generate(5, intervals=1.5)


def test_vocab_round_trip_and_padding():
    sv, tv = D.source_vocab(), D.target_vocab()
    pairs = D.generate(500, seed=5, intervals=0.3)
    # the fixed vocabulary covers every format
    assert all(c in sv.stoi for p in pairs for c in p.source)
    ids, lengths = sv.encode_batch([p.source for p in pairs])
    assert ids.dtype == np.int64 and ids.shape == (500, lengths.max())
    assert np.array_equal(lengths, [len(p.source) + 1 for p in pairs])  # + EOS
    assert np.all(ids[np.arange(ids.shape[1])[None, :] >= lengths[:, None]] == sv.PAD)
    assert sv.decode_batch(ids) == [p.source for p in pairs]
    assert (
        tv.decode(tv.encode("2026-11-21/2027-03-03", bos=True))
        == "2026-11-21/2027-03-03"
    )
    assert sv.encode("a€", eos=False)[1] == sv.UNK
    src, src_len, tgt = D.encode_pairs(pairs[:4])
    assert np.all(tgt[:, 0] == tv.BOS) and src.shape[0] == 4
