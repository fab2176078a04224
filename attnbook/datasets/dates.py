"""Human-written dates in many formats and languages, to be translated into ISO 8601
(``YYYY-MM-DD``).

A small but genuine translation task, generated on the fly (nothing is downloaded)::

    "Saturday, the 21st of November 2026"  ->  "2026-11-21"
    "samedi 21 novembre 2026"              ->  "2026-11-21"
    "Samstag, der 21. November 2026"       ->  "2026-11-21"
    "el sábado 21 de noviembre de 2026"    ->  "2026-11-21"
    "21.11.26"                             ->  "2026-11-21"
    "2026年11月21日 星期六"                  ->  "2026-11-21"

Like real translation, the output is a *reordering* of information found in the input
(the year comes last in most inputs and first in the output), some input words carry
no information the output needs (weekday names, articles, "the ... of"), and the same
meaning has many surface forms. Unlike real translation, every pair is
correct by construction: weekday names are computed from the date, and two-digit years
are unambiguous because the dates lie in 1950-2049 (``yy < 50`` means 20yy, otherwise
19yy). Numeric formats are day-first (European), never the US month-first order, so that
no input has two readings.

Everything is deterministic given a seed and uses only the standard library and
NumPy.

Main entry points: :func:`generate` (pairs), :func:`make_splits` (disjoint
    train/valid/test), :class:`CharVocab`
with :func:`source_vocab` / :func:`target_vocab` (characters to padded integer arrays
and back).
"""

from __future__ import annotations

import datetime
import functools
from typing import NamedTuple

import numpy as np

from .. import _checks, _spec

__all__ = [
    "DatePair",
    "FORMATS",
    "LANGUAGES",
    "INTERVALS",
    "CharVocab",
    "source_vocab",
    "target_vocab",
    "render",
    "render_interval",
    "generate",
    "make_splits",
    "encode_pairs",
]

FIRST_DATE = datetime.date(1950, 1, 1)
LAST_DATE = datetime.date(2049, 12, 31)

# Names indexed by month - 1 and by date.weekday() (Monday = 0).
_NAMES = {
    "en": {
        "month": [
            "January",
            "February",
            "March",
            "April",
            "May",
            "June",
            "July",
            "August",
            "September",
            "October",
            "November",
            "December",
        ],
        "mon": [
            "Jan",
            "Feb",
            "Mar",
            "Apr",
            "May",
            "Jun",
            "Jul",
            "Aug",
            "Sep",
            "Oct",
            "Nov",
            "Dec",
        ],
        "weekday": [
            "Monday",
            "Tuesday",
            "Wednesday",
            "Thursday",
            "Friday",
            "Saturday",
            "Sunday",
        ],
        "wkd": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"],
    },
    "fr": {
        "month": [
            "janvier",
            "février",
            "mars",
            "avril",
            "mai",
            "juin",
            "juillet",
            "août",
            "septembre",
            "octobre",
            "novembre",
            "décembre",
        ],
        "mon": [
            "janv.",
            "févr.",
            "mars",
            "avr.",
            "mai",
            "juin",
            "juil.",
            "août",
            "sept.",
            "oct.",
            "nov.",
            "déc.",
        ],
        "weekday": [
            "lundi",
            "mardi",
            "mercredi",
            "jeudi",
            "vendredi",
            "samedi",
            "dimanche",
        ],
        "wkd": ["lun.", "mar.", "mer.", "jeu.", "ven.", "sam.", "dim."],
    },
    "de": {
        "month": [
            "Januar",
            "Februar",
            "März",
            "April",
            "Mai",
            "Juni",
            "Juli",
            "August",
            "September",
            "Oktober",
            "November",
            "Dezember",
        ],
        "mon": [
            "Jan.",
            "Feb.",
            "März",
            "Apr.",
            "Mai",
            "Juni",
            "Juli",
            "Aug.",
            "Sept.",
            "Okt.",
            "Nov.",
            "Dez.",
        ],
        "weekday": [
            "Montag",
            "Dienstag",
            "Mittwoch",
            "Donnerstag",
            "Freitag",
            "Samstag",
            "Sonntag",
        ],
        "wkd": ["Mo.", "Di.", "Mi.", "Do.", "Fr.", "Sa.", "So."],
    },
    "es": {
        "month": [
            "enero",
            "febrero",
            "marzo",
            "abril",
            "mayo",
            "junio",
            "julio",
            "agosto",
            "septiembre",
            "octubre",
            "noviembre",
            "diciembre",
        ],
        "mon": [
            "ene.",
            "feb.",
            "mar.",
            "abr.",
            "may.",
            "jun.",
            "jul.",
            "ago.",
            "sept.",
            "oct.",
            "nov.",
            "dic.",
        ],
        "weekday": [
            "lunes",
            "martes",
            "miércoles",
            "jueves",
            "viernes",
            "sábado",
            "domingo",
        ],
        "wkd": ["lun.", "mar.", "mié.", "jue.", "vie.", "sáb.", "dom."],
    },
    "zh": {
        "weekday": [
            "星期一",
            "星期二",
            "星期三",
            "星期四",
            "星期五",
            "星期六",
            "星期日",
        ]
    },
    "ja": {"wkd": ["月", "火", "水", "木", "金", "土", "日"]},
}


def _ordinal_en(day):
    """1st, 2nd, 3rd, 4th, ..., 11th, 12th, 13th, ..., 21st, 22nd, 23rd, ..., 31st."""
    suffix = (
        "th"
        if 11 <= day % 100 <= 13
        else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    )
    return f"{day}{suffix}"


# (name, language, template). Templates are str.format strings over the fields that
# `_fields` computes.
FORMATS = (
    ("en_d_month_y", "en", "{d} {month} {yyyy}"),
    ("en_month_d_y", "en", "{month} {d}, {yyyy}"),
    ("en_mon_d_y", "en", "{mon} {d}, {yyyy}"),
    ("en_d_mon_y", "en", "{d} {mon} {yyyy}"),
    ("en_month_dth_y", "en", "{month} {dth}, {yyyy}"),
    ("en_weekday_d_month_y", "en", "{weekday}, {d} {month} {yyyy}"),
    ("en_weekday_month_d_y", "en", "{weekday}, {month} {d}, {yyyy}"),
    ("en_weekday_the_dth_of_month_y", "en", "{weekday}, the {dth} of {month} {yyyy}"),
    ("en_the_dth_of_month_y", "en", "the {dth} of {month}, {yyyy}"),
    ("en_wkd_d_mon_y", "en", "{wkd} {d} {mon} {yyyy}"),
    ("en_wkd_mon_d_y", "en", "{wkd}, {mon} {d}, {yyyy}"),
    ("fr_d_month_y", "fr", "{d_fr} {month} {yyyy}"),
    ("fr_weekday_d_month_y", "fr", "{weekday} {d_fr} {month} {yyyy}"),
    ("fr_le_d_month_y", "fr", "le {d_fr} {month} {yyyy}"),
    ("fr_le_weekday_d_month_y", "fr", "le {weekday} {d_fr} {month} {yyyy}"),
    ("fr_d_mon_y", "fr", "{d_fr} {mon} {yyyy}"),
    ("fr_wkd_d_mon_y", "fr", "{wkd} {d_fr} {mon} {yyyy}"),
    ("de_d_month_y", "de", "{d}. {month} {yyyy}"),
    ("de_weekday_d_month_y", "de", "{weekday}, {d}. {month} {yyyy}"),
    ("de_weekday_der_d_month_y", "de", "{weekday}, der {d}. {month} {yyyy}"),
    ("de_am_d_month_y", "de", "am {d}. {month} {yyyy}"),
    ("de_d_mon_y", "de", "{d}. {mon} {yyyy}"),
    ("de_wkd_d_mon_y", "de", "{wkd}, {d}. {mon} {yyyy}"),
    ("es_d_de_month_de_y", "es", "{d} de {month} de {yyyy}"),
    ("es_weekday_d_de_month_de_y", "es", "{weekday}, {d} de {month} de {yyyy}"),
    ("es_el_d_de_month_de_y", "es", "el {d} de {month} de {yyyy}"),
    ("es_el_weekday_d_de_month_de_y", "es", "el {weekday} {d} de {month} de {yyyy}"),
    ("es_d_mon_y", "es", "{d} {mon} {yyyy}"),
    ("es_wkd_d_mon_y", "es", "{wkd} {d} {mon} {yyyy}"),
    ("num_dd/mm/yyyy", "num", "{dd}/{mm}/{yyyy}"),
    ("num_d/m/yyyy", "num", "{d}/{m}/{yyyy}"),
    ("num_dd/mm/yy", "num", "{dd}/{mm}/{yy}"),
    ("num_dd.mm.yyyy", "num", "{dd}.{mm}.{yyyy}"),
    ("num_dd.mm.yy", "num", "{dd}.{mm}.{yy}"),
    ("num_dd-mm-yyyy", "num", "{dd}-{mm}-{yyyy}"),
    ("num_yyyy/mm/dd", "num", "{yyyy}/{mm}/{dd}"),
    ("num_yyyymmdd", "num", "{yyyy}{mm}{dd}"),
    ("zh_y_m_d", "zh", "{yyyy}年{m}月{d}日"),
    ("zh_y_m_d_weekday", "zh", "{yyyy}年{m}月{d}日 {weekday}"),
    ("ja_y_m_d_wkd", "ja", "{yyyy}年{m}月{d}日({wkd})"),
)
LANGUAGES = tuple(dict.fromkeys(lang for _, lang, _ in FORMATS))
_BY_NAME = {name: (lang, template) for name, lang, template in FORMATS}

# Date ranges, written as in each language, translated to the ISO 8601 interval
# "start/end" (e.g. "2026-11-21/2027-03-03"). Formats that begin with an article or a
# preposition ("le", "el", "am", "der") would not read correctly after "du", "del",
# "vom", so they are not used inside a range.
INTERVALS = {
    "en": ("from {a} to {b}", "between {a} and {b}", "{a} to {b}"),
    "fr": ("du {a} au {b}", "entre le {a} et le {b}"),
    "de": ("vom {a} bis {b}", "von {a} bis {b}"),
    "es": ("del {a} al {b}", "desde el {a} hasta el {b}"),
    "num": ("{a} - {b}", "{a} to {b}"),
    "zh": ("{a}至{b}", "从{a}到{b}"),
    "ja": ("{a}から{b}まで",),
}
_NO_RANGE = ("fr_le_", "es_el_", "de_am_", "de_weekday_der_")


class DatePair(NamedTuple):
    """One example: the human-written ``source``, its ISO ``target``, and the format
    and language used."""

    source: str
    target: str
    format: str
    language: str

    @property
    def is_interval(self):
        """True for a date range ("from A to B" -> "A/B"), False for a single date."""
        return "/" in self.target


def _fields(date, lang):
    names = _NAMES.get(lang, {})
    fields = {
        "d": date.day,
        "dd": f"{date.day:02d}",
        "m": date.month,
        "mm": f"{date.month:02d}",
        "yyyy": f"{date.year:04d}",
        "yy": f"{date.year % 100:02d}",
        "dth": _ordinal_en(date.day),
        "d_fr": "1er" if date.day == 1 else date.day,
    }
    for key, table in names.items():
        fields[key] = table[
            date.weekday() if key in ("weekday", "wkd") else date.month - 1
        ]
    return fields


def render(date, fmt):
    """Write ``date`` (a ``datetime.date``) in the format named ``fmt`` (a name from
    :data:`FORMATS`).

    >>> render(datetime.date(2026, 11, 21), "en_weekday_the_dth_of_month_y")
    'Saturday, the 21st of November 2026'
    """
    date = _date("date", date)
    if not isinstance(fmt, str) or fmt not in _BY_NAME:
        raise ValueError(
            f"unknown format {fmt!r}; the names are listed in "
            f"attnbook.datasets.dates.FORMATS"
        )
    lang, template = _BY_NAME[fmt]
    return template.format(**_fields(date, lang))


def _date(name, value):
    """A ``datetime.date`` (a ``datetime.datetime`` counts as its date)."""
    if isinstance(value, datetime.datetime):
        return value.date()
    if not isinstance(value, datetime.date):
        raise TypeError(f"{name} must be a datetime.date, got {value!r}")
    return value


def _names(name, value):
    """A list of names from a list/tuple of strings; one string is refused (its
    characters are not names)."""
    if value is None:
        return None
    if isinstance(value, str):
        raise TypeError(
            f"{name} must be a list of names, not a string (write [{value!r}])"
        )
    return _checks.texts(name, value, single=False)


def _check_draw(min_len, max_len, start, end, intervals):
    """The arguments ``generate`` and ``make_splits`` share; returns them checked."""
    min_len = _checks.count("min_len", min_len)
    if max_len is not None:
        max_len = _checks.count("max_len", max_len)
        if max_len < min_len:
            raise ValueError(
                f"max_len = {max_len} is below min_len = {min_len}: no "
                f"source could be kept"
            )
    start, end = _date("start", start), _date("end", end)
    if start > end:
        raise ValueError(f"start {start} is after end {end}")
    return min_len, max_len, start, end, _checks.probability("intervals", intervals)


def _select_formats(formats, languages, start, end):
    formats, languages = _names("formats", formats), _names("languages", languages)
    names = [name for name, _, _ in FORMATS] if formats is None else list(formats)
    for name in names:
        if name not in _BY_NAME:
            raise ValueError(f"unknown format {name!r}")
    if languages is not None:
        unknown = set(languages) - set(LANGUAGES)
        if unknown:
            raise ValueError(f"unknown languages {sorted(unknown)}; known: {LANGUAGES}")
        names = [n for n in names if _BY_NAME[n][0] in languages]
    if start < FIRST_DATE or end > LAST_DATE:
        # Outside 1950-2049 a two-digit year would have two readings: refuse rather than
        # generate wrong pairs.
        two_digit = [n for n in names if "{yy}" in _BY_NAME[n][1]]
        if two_digit:
            raise ValueError(
                f"formats {two_digit} use two-digit years, which are "
                f"unambiguous only for dates in "
                f"{FIRST_DATE}..{LAST_DATE}; leave them out or narrow the "
                f"date range"
            )
    if not names:
        raise ValueError("no format left after filtering by formats and languages")
    return names


def render_interval(first, last, fmt, connector=0, fmt_last=None):
    """Write the range ``first..last`` with connector number ``connector`` of the
    format's language.

    ``fmt_last`` (default ``fmt``) formats the end date; it must have the same
    language.

    >>> d = datetime.date
    >>> render_interval(d(2026, 11, 21), d(2027, 3, 3), "de_d_month_y")
    'vom 21. November 2026 bis 3. März 2027'
    """
    fmt_last = fmt if fmt_last is None else fmt_last
    lang = _BY_NAME[fmt][0] if isinstance(fmt, str) and fmt in _BY_NAME else None
    if (
        lang is None
        or not isinstance(fmt_last, str)
        or fmt_last not in _BY_NAME
        or _BY_NAME[fmt_last][0] != lang
    ):
        raise ValueError(
            f"formats {fmt!r} and {fmt_last!r} must be known and of the same language"
        )
    first, last = _date("first", first), _date("last", last)
    if first > last:
        raise ValueError(f"first {first} is after last {last}: a range runs forwards")
    n = len(INTERVALS[lang])
    connector = _spec.check_integer(
        "connector", connector, what=f"an integer in [0, {n}) for language {lang!r}"
    )
    if connector >= n:
        raise ValueError(
            f"connector must be an integer in [0, {n}) for language "
            f"{lang!r}, got {connector}"
        )
    return INTERVALS[lang][connector].format(
        a=render(first, fmt), b=render(last, fmt_last)
    )


def generate(
    n,
    *,
    seed=0,
    formats=None,
    languages=None,
    min_len=1,
    max_len=None,
    start=FIRST_DATE,
    end=LAST_DATE,
    unique=False,
    intervals=0.0,
):
    """``n`` random :class:`DatePair` examples, deterministic given ``seed``.

    Each example draws a date uniformly from ``start..end`` (inclusive) and a format
    uniformly from the allowed ones, and keeps the pair if the source has between
    ``min_len`` and ``max_len`` characters (inclusive; ``None`` = no upper bound).
    That length filter is how the book builds test sets of short and of long inputs.

    With probability ``intervals`` an example is instead a date *range*, "from A to
    B" in the language of the drawn format (each end written in a format of that
    language drawn independently) -> ``"A/B"`` in ISO 8601 interval notation, with
    ``A < B`` both in ``start..end``. Ranges are the long inputs of this task: about
    twice the characters and twice the information of a single date.

    Args:
        n: number of examples.
        seed: seed of the NumPy generator; the same arguments and seed give the same
            list.
        formats: names from :data:`FORMATS` to draw from (default: all).
        languages: restrict to these languages (codes in :data:`LANGUAGES`; ``"num"``
            are the numeric formats).
        min_len, max_len: bounds on ``len(source)``.
        start, end: ``datetime.date`` bounds of the dates.
        unique: if True, no two examples share a source string.
        intervals: probability in ``[0, 1]`` that an example is a date range.

    Raises:
        ValueError: unknown format or language, an empty date range, ``max_len <
            min_len``, a length range no format can produce, a negative ``n``,
            ``seed``, ``min_len`` or ``max_len``, ``intervals`` outside ``[0, 1]``.
        TypeError: a number that is not an integer where one is needed (NumPy
            integers are fine), ``formats`` or ``languages`` given as one string
            instead of a list, dates that are not ``datetime.date`` (a
            ``datetime.datetime`` counts as its date), ``unique`` not a bool.
    """
    n = _checks.count("n", n)
    seed = _spec.check_integer("seed", seed)
    min_len, max_len, start, end, intervals = _check_draw(
        min_len, max_len, start, end, intervals
    )
    unique = _spec.check_flag("unique", unique)
    names = _select_formats(formats, languages, start, end)
    rng = np.random.default_rng(seed)
    return _draw(
        n,
        rng,
        names,
        np.arange(start.toordinal(), end.toordinal() + 1),
        min_len,
        max_len,
        unique,
        intervals=intervals,
    )


def _draw(
    n,
    rng,
    names,
    ordinals,
    min_len,
    max_len,
    unique,
    exclude=frozenset(),
    intervals=0.0,
):
    hi = np.inf if max_len is None else max_len
    in_range = [nm for nm in names if not nm.startswith(_NO_RANGE)]
    out, seen = [], set(exclude)
    tries, limit = 0, 200 * n + 10_000
    while len(out) < n:
        # Draw in vectorised chunks and filter in Python; a chunk is capped so that a
        # huge n asks for no huge array.
        size = min(2 * (n - len(out)) + 16, 1 << 20)
        days = rng.choice(ordinals, size=(size, 2))
        fmts = rng.integers(len(names), size=size)
        kinds = rng.random(size) < intervals
        for (day, day2), f, is_range in zip(days, fmts, kinds, strict=False):
            tries += 1
            fmt = names[f]
            lang = _BY_NAME[fmt][0]
            if is_range and day != day2:
                first, last = (
                    datetime.date.fromordinal(int(x)) for x in sorted((day, day2))
                )
                pool = [nm for nm in in_range if _BY_NAME[nm][0] == lang]
                if not pool:
                    continue
                f1, f2 = (pool[i] for i in rng.integers(len(pool), size=2))
                source = render_interval(
                    first, last, f1, int(rng.integers(len(INTERVALS[lang]))), f2
                )
                target, fmt = f"{first.isoformat()}/{last.isoformat()}", f"{f1}+{f2}"
            else:
                date = datetime.date.fromordinal(int(day))
                source, target = render(date, fmt), date.isoformat()
            if (
                not min_len <= len(source) <= hi
                or (unique and source in seen)
                or source in exclude
            ):
                continue
            seen.add(source)
            out.append(DatePair(source, target, fmt, lang))
            if len(out) == n:
                break
        if tries > limit:
            raise ValueError(
                f"could draw only {len(out)} of {n} examples with "
                f"{min_len} <= length <= {max_len} "
                f"(unique={unique}); widen the length range or the date "
                f"range"
            )
    return out


def make_splits(n_train, n_valid, n_test, *, seed=0, by="source", **kwargs):
    """Train, validation and test lists of :class:`DatePair` with no overlap between
    them.

    Args:
        n_train, n_valid, n_test: sizes of the three splits.
        seed: seed of the NumPy generator.
        by: ``"source"``: no source string occurs in two splits (nor twice in one);
            ``"date"``: stricter, the calendar days themselves are partitioned, so no
            test date was seen in training in *any* format.
        **kwargs: ``formats``, ``languages``, ``min_len``, ``max_len``, ``start``,
            ``end``, ``intervals`` as in :func:`generate`.

    Returns:
        ``(train, valid, test)``.
    """
    sizes = tuple(
        _checks.count(n, v)
        for n, v in (("n_train", n_train), ("n_valid", n_valid), ("n_test", n_test))
    )
    seed = _spec.check_integer("seed", seed)
    _checks.string("by", by, ("source", "date"))
    start, end = kwargs.pop("start", FIRST_DATE), kwargs.pop("end", LAST_DATE)
    min_len, max_len = kwargs.pop("min_len", 1), kwargs.pop("max_len", None)
    intervals = kwargs.pop("intervals", 0.0)
    formats, languages = kwargs.pop("formats", None), kwargs.pop("languages", None)
    if kwargs:
        raise TypeError(f"unexpected arguments {sorted(kwargs)}")
    min_len, max_len, start, end, intervals = _check_draw(
        min_len, max_len, start, end, intervals
    )
    names = _select_formats(formats, languages, start, end)
    rng = np.random.default_rng(seed)
    ordinals = np.arange(start.toordinal(), end.toordinal() + 1)
    if by == "date":
        # Give each split a share of the calendar proportional to its size (at least one
        # day each).
        perm = rng.permutation(ordinals)
        total = max(sum(sizes), 1)
        cuts = np.cumsum([max(1, round(len(perm) * s / total)) for s in sizes[:-1]])
        pools = np.split(perm, cuts)
        for split, size, pool in zip(
            ("train", "valid", "test"), sizes, pools, strict=False
        ):
            if size and not pool.size:
                raise ValueError(
                    f"the date range {start}..{end} ({len(ordinals)} days) "
                    f"is too short to give the "
                    f"{split} split days of its own (by='date'); widen it"
                )
        return tuple(
            _draw(s, rng, names, pool, min_len, max_len, True, intervals=intervals)
            for s, pool in zip(sizes, pools, strict=False)
        )
    splits, used = [], set()
    for s in sizes:
        split = _draw(
            s,
            rng,
            names,
            ordinals,
            min_len,
            max_len,
            True,
            exclude=frozenset(used),
            intervals=intervals,
        )
        used.update(p.source for p in split)
        splits.append(split)
    return tuple(splits)


class CharVocab:
    """Characters <-> integer ids, with the special tokens ``PAD = 0``, ``BOS = 1``,
    ``EOS = 2``, ``UNK = 3``.

    ``encode`` turns a string into ids (optionally framed by BOS/EOS),
    ``encode_batch`` pads a list of strings into one ``(B, L)`` int64 array with PAD
    (right padding) and returns the lengths, which is what ``attnbook.padding_mask``
    turns into an attention mask. ``decode`` stops at the first EOS and drops
    PAD/BOS.
    """

    PAD, BOS, EOS, UNK = 0, 1, 2, 3
    SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")

    def __init__(self, chars):
        """``chars``: a string or an iterable of single characters; repeats are
        dropped, the order is kept."""
        try:
            chars = list(dict.fromkeys(chars))  # unique, order kept
        except TypeError:
            raise TypeError(
                f"chars must be a string or an iterable of single "
                f"characters, got {chars!r}"
            ) from None
        for c in chars:
            if not isinstance(c, str) or len(c) != 1:
                raise TypeError(
                    f"chars must hold single characters (encode reads a "
                    f"text character by character), "
                    f"got {c!r}"
                )
        self.itos = list(self.SPECIALS) + chars
        self.stoi = {c: i for i, c in enumerate(self.itos)}

    @classmethod
    def from_texts(cls, texts):
        """A vocabulary of the characters occurring in ``texts`` (a list of strings),
        sorted."""
        return cls(sorted(set("".join(_checks.texts("texts", texts, single=False)))))

    def __len__(self):
        return len(self.itos)

    def __repr__(self):
        specials = len(self.SPECIALS)
        return f"CharVocab({len(self) - specials} characters + {specials} specials)"

    def encode(self, text, *, bos=False, eos=True):
        """``text`` as a list of ids; characters outside the vocabulary become
        ``UNK``."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a string, got {text!r}")
        bos, eos = _spec.check_flag("bos", bos), _spec.check_flag("eos", eos)
        ids = [self.stoi.get(c, self.UNK) for c in text]
        return ([self.BOS] if bos else []) + ids + ([self.EOS] if eos else [])

    def decode(self, ids):
        """The string of ``ids`` (a sequence of integer ids in ``[0, len(self))``;
        negative ids are refused, not read from the end), up to the first EOS,
        without PAD and BOS."""
        if isinstance(ids, str):
            raise TypeError(
                f"ids must be a sequence of integer ids, not a string ({ids!r})"
            )
        h = _checks.host("ids", ids)
        _checks.check_shape("ids", h, "(L,)")
        if h.shape[0] == 0:  # np.asarray([]) is float64: nothing to decode
            return ""
        _checks.check_ids("ids", h, len(self), "character ids")
        out = []
        for i in h.values.tolist():
            if i == self.EOS:
                break
            if i not in (self.PAD, self.BOS):
                out.append(self.itos[i])
        return "".join(out)

    def encode_batch(self, texts, *, bos=False, eos=True, length=None):
        """Encode and right-pad ``texts`` with PAD.

        Returns:
            ``(ids, lengths)``: ``ids`` int64 ``(B, L)`` with ``L = length`` or the
            longest encoding, and ``lengths`` int64 ``(B,)``, the number of non-PAD
            ids of each row (BOS/EOS included).
        """
        texts = _checks.texts("texts", texts, single=False)
        encoded = [self.encode(t, bos=bos, eos=eos) for t in texts]
        lengths = np.array([len(e) for e in encoded], dtype=np.int64)
        width = (
            int(lengths.max(initial=0))
            if length is None
            else _checks.count("length", length)
        )
        if lengths.size and lengths.max() > width:
            raise ValueError(
                f"length={width} is shorter than the longest encoding ({lengths.max()})"
            )
        ids = np.full((len(texts), width), self.PAD, dtype=np.int64)
        for row, e in zip(ids, encoded, strict=False):
            row[: len(e)] = e
        return ids, lengths

    def decode_batch(self, ids):
        """``decode`` of each row of a ``(B, L)`` integer array."""
        h = _checks.host("ids", ids)
        _checks.check_shape("ids", h, "(B, L)")
        return [self.decode(row) for row in h.values]

    def tokens(self, text, *, eos=True):
        """The characters of ``text`` as display labels (plus ``"</s>"``), e.g. for
        heatmap tick labels."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a string, got {text!r}")
        eos = _spec.check_flag("eos", eos)
        return list(text) + ([self.SPECIALS[self.EOS]] if eos else [])


@functools.cache
def source_vocab():
    """The :class:`CharVocab` of every character that any format can produce (fixed,
    independent of a sample)."""
    chars = set()
    # every month and weekday
    days = [datetime.date(2024, 1, 1) + datetime.timedelta(days=k) for k in range(366)]
    for name, _, _ in FORMATS:
        for date in days:
            chars.update(render(date, name))
    for connectors in INTERVALS.values():
        for c in connectors:
            chars.update(c.format(a="", b=""))
    return CharVocab(sorted(chars))


@functools.cache
def target_vocab():
    """The :class:`CharVocab` of ISO dates and intervals: the ten digits, ``-`` and
    ``/``."""
    return CharVocab("0123456789-/")


def encode_pairs(pairs, src_vocab=None, tgt_vocab=None):
    """Arrays for training: ``(src, src_lengths, tgt)`` from a list of
    :class:`DatePair`.

    ``src`` is ``(N, Lin)`` int64 (source characters + EOS, right-padded with PAD),
    ``src_lengths`` ``(N,)``, ``tgt`` ``(N, Lout)`` int64 (BOS + target characters +
    EOS, padded): teacher forcing feeds ``tgt[:, :-1]`` and predicts ``tgt[:, 1:]``.
    ``pairs`` may also be ``(source, target)`` string pairs.
    """
    src_vocab = source_vocab() if src_vocab is None else src_vocab
    tgt_vocab = target_vocab() if tgt_vocab is None else tgt_vocab
    for name, vocab in (("src_vocab", src_vocab), ("tgt_vocab", tgt_vocab)):
        if not isinstance(vocab, CharVocab):
            raise TypeError(
                f"{name} must be a CharVocab or None, got {type(vocab).__name__}"
            )
    if isinstance(pairs, str) or not hasattr(pairs, "__iter__"):
        raise TypeError(f"pairs must be a list of DatePair, got {type(pairs).__name__}")
    pairs = list(pairs)
    for i, p in enumerate(pairs):
        if not (
            isinstance(p, (tuple, list))
            and len(p) >= 2
            and isinstance(p[0], str)
            and isinstance(p[1], str)
        ):
            raise TypeError(
                f"pairs must hold DatePair (or (source, target) string "
                f"pairs), got {p!r} at position {i}"
            )
    src, src_lengths = src_vocab.encode_batch([p[0] for p in pairs])
    tgt, _ = tgt_vocab.encode_batch([p[1] for p in pairs], bos=True)
    return src, src_lengths, tgt
