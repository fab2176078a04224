"""The built website, checked in a real browser: headless Chromium, driven by
Playwright, over every page.

What a reader would notice first is checked on every HTML page of the site:
    JavaScript errors, images that do not
load, equations left as raw TeX, broken internal links and anchors; at 1280 x 800,
code that scrolls sideways, a page head with more than one search box, a chapter that
does not open on its title, Markdown tables left as raw pipes, figures shrunk to less
than half their pixels, characters no installed font can draw; at 390 px (a phone), a
page that scrolls sideways and wide tables or equations that do not scroll in their
own box. Then the interactive parts: the synced framework tabs, the search page, the
dark theme, the phone navigation and the attention explorer. Screenshots of a few key
pages go to ``_build/screenshots/``.

The site is ``_build/html`` (what ``make book`` writes; ``ATTNBOOK_SITE`` points
elsewhere). It is reused when it is complete, and built with the same command as
``make book`` when a page of ``_toc.yml`` is missing from it.

The browser is the system's Chromium (Debian's ``chromium`` package), never one
downloaded by Playwright. Without it the tests skip; with ``CI=true`` they fail
instead, because CI installs the browser itself (``.ci/run``).
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
import unicodedata
import urllib.parse
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SITE = Path(os.environ.get("ATTNBOOK_SITE", ROOT / "_build" / "html"))
SCREENSHOTS = Path(
    os.environ.get("ATTNBOOK_SCREENSHOTS", ROOT / "_build" / "screenshots")
)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# Text that must not survive typesetting: display-math fences and TeX commands that only
# appear in math.
RAW_TEX = re.compile(r"\$\$|\\frac|\\begin\{|\\sqrt\{|\\operatorname")
# How long (ms) to wait for MathJax on one page, and for the search index.
MATHJAX_TIMEOUT = 30_000
SEARCH_TIMEOUT = 30_000
# The reader's screens: a laptop (the width the code column is sized for) and a phone.
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
# matplotlib's warnings when a figure needs a glyph that none of its fonts has (drawn as
# an empty box).
MISSING_GLYPH = re.compile(
    r"Glyph \d+ .*missing from (current )?font|findfont: "
    r"(Generic family|Font family) .*not found"
)


def _unavailable(reason):
    """Skip on a reader's machine; fail in CI, where every prerequisite is installed
    on purpose."""
    if IN_CI:
        pytest.fail(f"{reason} (required when CI=true)")
    pytest.skip(reason)


def _find_chromium():
    for candidate in (
        os.environ.get("CHROMIUM"),
        "chromium",
        "chromium-browser",
        "google-chrome",
    ):
        if candidate and (path := shutil.which(candidate)):
            return path
    return None


def _toc_pages():
    """Site-relative HTML paths of every page named in ``_toc.yml`` (so new chapters
    are covered automatically)."""
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf8"))
    files = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections"))
            walk(entry.get("chapters"))

    walk(toc.get("parts"))
    walk(toc.get("chapters"))
    walk(toc.get("sections"))
    return [f"{f}.html" for f in files]


# --------------------------------------------------------------------------------------
# Fixtures: the site, a local server, the browser, and one visit of every page.
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium_path():
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _unavailable(
            "playwright is not installed (pip install playwright; no browser "
            "download needed)"
        )
    path = _find_chromium()
    if path is None:
        _unavailable(
            "no Chromium found (apt-get install chromium, or set "
            "CHROMIUM=/path/to/chrome)"
        )
    return path


@pytest.fixture(scope="module")
def site(chromium_path):
    """The built site directory, built first if it is missing or lacks a page of the
    table of contents."""
    missing = [p for p in _toc_pages() if not (SITE / p).is_file()]
    if missing:
        if "ATTNBOOK_SITE" in os.environ:
            pytest.fail(f"ATTNBOOK_SITE={SITE} lacks {missing}")
        jb = Path(sys.executable).with_name("jupyter-book")
        # The same command as `make book`, so the reused and the freshly built site are
        # the same thing.
        cmd = [
            str(jb),
            "build",
            str(ROOT),
            "--builder",
            "html",
            "--warningiserror",
            "--nitpick",
            "--keep-going",
        ]
        print(f"building the site, {len(missing)} pages missing: {' '.join(cmd)}")
        subprocess.run(cmd, check=True, cwd=ROOT)
        missing = [p for p in _toc_pages() if not (SITE / p).is_file()]
        assert not missing, f"the build did not produce {missing}"
    return SITE


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def base_url(site):
    """Serve the site on a free localhost port from a background thread."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        # --no-sandbox: CI runs as root, where Chromium refuses its sandbox.
        browser = pw.chromium.launch(
            executable_path=chromium_path, headless=True, args=["--no-sandbox"]
        )
        yield browser
        browser.close()


def _site_pages(site):
    """Every HTML page of the site: chapters, index, search, general index (not the
    theme's static files)."""
    pages = []
    for path in sorted(site.rglob("*.html")):
        rel = path.relative_to(site).as_posix()
        if rel.split("/")[0].startswith("_"):
            continue
        pages.append(rel)
    return pages


class _Page:
    """What one visit of one page found."""

    def __init__(self, path):
        self.path = path
        self.console_errors: list[str] = []
        self.external_requests: list[str] = []
        self.broken_images: list[str] = []
        self.images = 0
        self.output_images = 0
        self.diagrams: list[dict] = []
        self.untypeset_math = 0
        self.math_elements = 0
        self.raw_tex: list[str] = []
        self.links: list[str] = []
        self.ids: set[str] = set()
        self.wide_code: list[str] = []
        self.search_boxes = 0
        self.header_height = 0.0
        self.logo_visible = False
        self.title_first = True
        self.code_cells = 0
        self.raw_tables: list[str] = []
        self.shrunk_images: list[str] = []
        self.characters = ""


def _new_page(browser, base_url, record, viewport=DESKTOP):
    """A page whose errors go to ``record`` and which may not fetch anything outside
    the local server: the site must be self-contained (CI and readers offline have no
    CDN)."""
    context = browser.new_context(viewport=viewport, color_scheme="light")
    page = context.new_page()

    def route(r):
        url = r.request.url
        if (
            url.startswith(base_url)
            or url.startswith("data:")
            or url.startswith("blob:")
        ):
            r.continue_()
        else:
            record.external_requests.append(url)
            r.abort()

    page.route("**/*", route)
    page.on(
        "console",
        lambda m: (
            m.type == "error"
            and record.console_errors.append(f"{m.text} @ {m.location}")
        ),
    )
    page.on("pageerror", lambda e: record.console_errors.append(f"uncaught: {e}"))
    return context, page


# Runs in the page: wait for MathJax (if the page loads it), make lazy images load, then
# report.
_INSPECT_JS = r"""
async () => {
  if (window.MathJax && window.MathJax.startup && window.MathJax.startup.promise) {
    await window.MathJax.startup.promise;
  }
  const imgs = Array.from(document.images);
  for (const img of imgs) { img.loading = "eager"; }
  await Promise.all(imgs.map(img => img.complete ? null : new Promise(ok => {
    img.addEventListener("load", ok); img.addEventListener("error", ok); setTimeout(ok, 10000);
  })));
  const broken = imgs.filter(img => !(img.complete && img.naturalWidth > 0)).map(img => img.currentSrc || img.src);
  const maths = Array.from(document.querySelectorAll(".math"));
  const untypeset = maths.filter(m => !m.querySelector("mjx-container") && !m.closest("mjx-container")).length;
  // Visible prose only: code blocks and cell outputs legitimately contain TeX source (matplotlib labels).
  const skip = "pre, code, script, style, textarea, mjx-container, .highlight, .cell_output";
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT, {
    acceptNode: n => (n.parentElement && n.parentElement.closest(skip)) ? NodeFilter.FILTER_REJECT
                                                                         : NodeFilter.FILTER_ACCEPT });
  const texts = [];
  while (walker.nextNode()) { texts.push(walker.currentNode.nodeValue); }
  // Links, and the files the page itself references (favicon, stylesheets, scripts): all must exist.
  const links = Array.from(document.querySelectorAll("a[href], link[href]")).map(a => a.href)
      .concat(Array.from(document.querySelectorAll("script[src]")).map(s => s.src));
  const ids = Array.from(document.querySelectorAll("[id]")).map(e => e.id)
      .concat(Array.from(document.querySelectorAll("a[name]")).map(e => e.name));
  const outputImages = document.querySelectorAll(".cell_output img").length;
  const diagrams = Array.from(document.querySelectorAll("img.diagram")).map(img => ({
      src: img.currentSrc || img.src, alt: img.getAttribute("alt") || "",
      loaded: img.complete && img.naturalWidth > 0}));
  const visible = e => { const r = e.getBoundingClientRect(), cs = getComputedStyle(e);
                         return r.width > 0 && r.height > 0 && cs.visibility !== "hidden" && cs.display !== "none"; };
  // The page head: one search box (outside the search page's own form), no band above the logo.
  const searchBoxes = Array.from(document.querySelectorAll(".search-button__button, .bd-search"))
      .filter(e => !e.closest(".bd-article, .bd-search-container") && visible(e)).length;
  const header = document.querySelector(".bd-header");
  const logo = document.querySelector(".navbar-brand.logo");
  let logoVisible = false;
  if (logo && visible(logo)) {
    // The theme scrolls the sidebar to the current chapter: back to its top, where the logo is.
    for (let a = logo.parentElement; a; a = a.parentElement) { a.scrollTop = 0; }
    const r = logo.getBoundingClientRect(), hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
    logoVisible = r.top >= 0 && !!hit && logo.contains(hit);
  }
  // A notebook page opens on its title: the <h1> comes before the first code cell.
  const article = document.querySelector(".bd-article") || document.body;
  const h1 = article.querySelector("h1"), firstCell = article.querySelector("div.cell");
  const titleFirst = !firstCell || (!!h1 && !!(h1.compareDocumentPosition(firstCell) & Node.DOCUMENT_POSITION_FOLLOWING));
  const codeCells = article.querySelectorAll("div.cell").length;
  // Markdown tables that were not rendered: a paragraph holding a |---|---| separator row.
  const rawTables = Array.from(article.querySelectorAll("p, li")).map(p => p.textContent)
      .filter(t => /\|\s*:?-{3,}:?\s*\|/.test(t)).map(t => t.slice(0, 120));
  // Measure everything a reader can open: collapsed cells and the hidden tabs of tab sets.
  article.querySelectorAll("details").forEach(d => { d.open = true; });
  const showTabs = document.createElement("style");
  showTabs.textContent = ".sd-tab-set > .sd-tab-content { display: block !important; }";
  document.head.appendChild(showTabs);
  // Code that scrolls sideways: any block of code that is not a cell's output.
  const wideCode = Array.from(article.querySelectorAll("pre"))
      .filter(p => !p.closest(".cell_output, .output") && p.scrollWidth > p.clientWidth)
      .map(p => { const lines = p.textContent.split("\n"); const longest = lines.reduce((a, b) => b.length > a.length ? b : a, "");
                  return `${longest.length} columns in ${p.clientWidth} px: ${longest.trim().slice(0, 80)}`; });
  // Figures shrunk to less than half their pixels (drawn too wide for the column).
  const shrunk = Array.from(article.querySelectorAll("img")).filter(i => {
    const w = i.getBoundingClientRect().width; return i.naturalWidth > 0 && w > 0 && w < i.naturalWidth / 2; })
      .map(i => `${(i.currentSrc || i.src).split("/").pop()}: ${i.naturalWidth} px shown at ${Math.round(i.getBoundingClientRect().width)} px`);
  showTabs.remove();
  // Every character of the page's text (math aside: MathJax draws it with its own fonts).
  const all = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT, {
    acceptNode: n => (n.parentElement && n.parentElement.closest("script, style, mjx-container"))
                     ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT });
  const chars = new Set();
  while (all.nextNode()) { for (const c of all.currentNode.nodeValue) { chars.add(c); } }
  return {broken, images: imgs.length, outputImages, diagrams, maths: maths.length, untypeset, text: texts.join(" "), links, ids,
          searchBoxes, headerHeight: header ? header.getBoundingClientRect().height : 0, logoVisible, titleFirst,
          codeCells, rawTables, wideCode, shrunk, characters: Array.from(chars).join("")};
}
"""


@pytest.fixture(scope="module")
def visits(site, base_url, browser):
    """Visit every page once; the per-page tests below read what each visit found."""
    results = {}
    for rel in _site_pages(site):
        record = _Page(rel)
        context, page = _new_page(browser, base_url, record)
        try:
            page.goto(base_url + rel, wait_until="load")
            page.wait_for_load_state("networkidle")
            found = page.evaluate(_INSPECT_JS)
        finally:
            context.close()
        record.broken_images = found["broken"]
        record.images = found["images"]
        record.output_images = found["outputImages"]
        record.diagrams = found["diagrams"]
        record.math_elements = found["maths"]
        record.untypeset_math = found["untypeset"]
        record.raw_tex = sorted({m.group(0) for m in RAW_TEX.finditer(found["text"])})
        record.links = found["links"]
        record.ids = set(found["ids"])
        record.search_boxes = found["searchBoxes"]
        record.header_height = found["headerHeight"]
        record.logo_visible = found["logoVisible"]
        record.title_first = found["titleFirst"]
        record.code_cells = found["codeCells"]
        record.raw_tables = found["rawTables"]
        record.wide_code = found["wideCode"]
        record.shrunk_images = found["shrunk"]
        record.characters = found["characters"]
        results[rel] = record
    return results


# --------------------------------------------------------------------------------------
# Every page.
# --------------------------------------------------------------------------------------


def test_every_toc_page_was_visited(visits):
    pages = set(visits)
    assert set(_toc_pages()) <= pages, (
        f"toc pages missing from the site: {set(_toc_pages()) - pages}"
    )
    assert {"search.html", "genindex.html"} <= pages


def test_no_javascript_errors(visits):
    errors = {p: v.console_errors for p, v in visits.items() if v.console_errors}
    assert not errors, f"JavaScript console errors: {errors}"


def test_site_is_self_contained(visits):
    """No page fetches scripts, styles, fonts or images from the internet (MathJax is
    bundled)."""
    external = {
        p: v.external_requests for p, v in visits.items() if v.external_requests
    }
    assert not external, f"pages load resources from outside the site: {external}"


def test_every_image_loads(visits):
    # The chapters have figures, so a site without images means the check saw nothing.
    assert sum(v.output_images for v in visits.values()) >= 5
    broken = {p: v.broken_images for p, v in visits.items() if v.broken_images}
    assert not broken, f"images that did not load: {broken}"


def test_diagrams_load_and_have_alt_text(visits):
    """Every explanatory diagram (book/_static/diagrams/*.svg, shown with :class:
    diagram) is on a page, loads, and has alt text a screen reader can say (a
    sentence, not a file name)."""
    shown = {}
    for rel, v in visits.items():
        for d in v.diagrams:
            shown.setdefault(d["src"].rsplit("/", 1)[-1], []).append((rel, d))
    committed = {p.name for p in (ROOT / "book" / "_static" / "diagrams").glob("*.svg")}
    assert len(committed) >= 10, (
        f"only {len(committed)} diagrams in book/_static/diagrams"
    )
    missing = sorted(committed - set(shown))
    assert not missing, f"diagrams committed but shown on no page: {missing}"
    bad = [
        (rel, d["src"]) for uses in shown.values() for rel, d in uses if not d["loaded"]
    ]
    assert not bad, f"diagrams that did not load: {bad}"
    no_alt = [
        (rel, d["src"])
        for uses in shown.values()
        for rel, d in uses
        if len(d["alt"].split()) < 5 or d["alt"].lower().endswith(".svg")
    ]
    assert not no_alt, f"diagrams without a sentence of alt text: {no_alt}"


def test_math_is_typeset(visits, site):
    # The math chapter must have equations at all, or this test would pass vacuously.
    with_math = [p for p, v in visits.items() if v.math_elements]
    assert with_math, "no page has math elements"
    assert any(v.math_elements >= 20 for v in visits.values())
    untypeset = {
        p: f"{v.untypeset_math}/{v.math_elements}"
        for p, v in visits.items()
        if v.untypeset_math
    }
    assert not untypeset, f"math elements MathJax did not typeset: {untypeset}"
    raw = {p: v.raw_tex for p, v in visits.items() if v.raw_tex}
    assert not raw, f"raw TeX left in the visible text: {raw}"
    assert (site / "_static" / "mathjax" / "tex-chtml.js").is_file(), (
        "MathJax is not bundled with the site"
    )


def _target_file(site, path):
    file = site / urllib.parse.unquote(path).lstrip("/")
    if file.is_dir():
        file = file / "index.html"
    return file


def test_no_broken_internal_links(visits, site, base_url):
    ids_of = {rel: v.ids for rel, v in visits.items()}
    broken = []
    for rel, v in visits.items():
        for href in v.links:
            if not href.startswith(base_url):
                # external links (GitHub, Colab, DOIs) are not fetched: CI has no
                # internet
                continue
            url = urllib.parse.urlsplit(href)
            target = url.path[len(urllib.parse.urlsplit(base_url).path) :]
            file = _target_file(site, target)
            if not file.is_file():
                broken.append(f"{rel} -> {href} (no such file)")
                continue
            fragment = urllib.parse.unquote(url.fragment)
            if fragment and file.suffix == ".html":
                target_rel = file.relative_to(site).as_posix()
                ids = ids_of.get(target_rel)
                if ids is None:
                    html = file.read_text(encoding="utf8", errors="replace")
                    ids = set(re.findall(r'\bid="([^"]+)"', html)) | set(
                        re.findall(r'\bname="([^"]+)"', html)
                    )
                    ids_of[target_rel] = ids
                if fragment not in ids:
                    broken.append(f"{rel} -> {href} (no anchor #{fragment})")
    assert not broken, "broken internal links:\n" + "\n".join(sorted(set(broken)))


def test_launch_download_and_repository_buttons(visits, base_url):
    """Every chapter page links its source (download), the repository, edit and issue
    pages; notebook pages also open in Colab and Binder. All URLs derive from
    `repository:` in _config.yml."""
    import yaml

    repo = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf8"))[
        "repository"
    ]
    url, branch = repo["url"].rstrip("/"), repo.get("branch", "main")
    colab = url.replace(
        "https://github.com/", "https://colab.research.google.com/github/"
    )
    binder = url.replace("https://github.com/", "https://mybinder.org/v2/gh/")
    problems = []
    for page in _toc_pages():
        stem = page[: -len(".html")]
        source = next(
            (
                stem + ext
                for ext in (".ipynb", ".md")
                if (ROOT / (stem + ext)).is_file()
            ),
            None,
        )
        assert source, f"no source file for {page}"
        links = set(visits[page].links)
        expected = [
            f"{base_url}_sources/{source}",
            url,
            f"{url}/edit/{branch}/{source}",
            f"{url}/issues/new",
        ]
        if source.endswith(".ipynb"):
            expected += [
                f"{colab}/blob/{branch}/{source}",
                f"{binder}/{branch}?urlpath=tree/{source}",
            ]
        for link in expected:
            if not any(
                have == link
                or have.startswith(link + "?")
                or (link.endswith("/new") and link in have)
                for have in links
            ):
                problems.append(f"{page}: no link to {link}")
    assert not problems, "\n".join(problems)


def test_one_search_box_and_no_band_above_the_logo(visits):
    """The theme's top navbar (a band with a second "Search Ctrl+K" box, over the
    sidebar's logo) stays off."""
    problems = {
        p: f"{v.search_boxes} search boxes, header {v.header_height:.0f} px, "
        f"logo visible: {v.logo_visible}"
        for p, v in visits.items()
        if v.search_boxes != 1 or v.header_height > 0 or not v.logo_visible
    }
    assert not problems, problems


def test_notebook_pages_open_on_their_title(visits):
    """The chapter's <h1> comes before its first code cell (the collapsed Colab
    set-up cell)."""
    notebooks = [
        p for p in _toc_pages() if (ROOT / (p[: -len(".html")] + ".ipynb")).is_file()
    ]
    assert notebooks and all(visits[p].code_cells for p in notebooks)
    late = [p for p in notebooks if not visits[p].title_first]
    assert not late, f"pages where a code cell comes before the title: {late}"


def test_no_raw_markdown_tables(visits):
    """A table is a <table>, never a paragraph of pipes (display(Markdown(...)) needs
    GitHub-flavoured Markdown)."""
    raw = {p: v.raw_tables for p, v in visits.items() if v.raw_tables}
    assert not raw, f"Markdown tables left as text: {raw}"


def test_figures_are_sized_for_the_column(visits):
    """No figure is drawn so wide that the page shows it at less than half its pixels
    (at 1280 px)."""
    shrunk = {p: v.shrunk_images for p, v in visits.items() if v.shrunk_images}
    assert not shrunk, f"figures shown at under half their width: {shrunk}"


def test_code_fits_the_column(visits):
    """At 1280 x 800 no block of code scrolls sideways: 88 columns fit
    (book/_static/attnbook.css)."""
    wide = {p: v.wide_code for p, v in visits.items() if v.wide_code}
    listing = "\n".join(f"{p}: {c}" for p, codes in sorted(wide.items()) for c in codes)
    assert not wide, (
        f"{sum(map(len, wide.values()))} code blocks scroll sideways at 1280 "
        f"px:\n{listing}"
    )


@functools.lru_cache(maxsize=1)
def _font_charsets():
    """The character set of every font file fontconfig knows: the fonts Chromium
    falls back through on Linux."""
    from fontTools.ttLib import TTCollection, TTFont

    try:
        listing = subprocess.run(
            ["fc-list", "--format", "%{file}\\n"],
            capture_output=True,
            text=True,
            check=True,
        )
        files = sorted(set(listing.stdout.splitlines()) - {""})
    except (OSError, subprocess.CalledProcessError):
        from matplotlib import font_manager

        files = sorted(font_manager.findSystemFonts())
    charsets = []
    for file in files:
        try:
            fonts = (
                TTCollection(file, lazy=True).fonts
                if file.lower().endswith(".ttc")
                else [TTFont(file, lazy=True)]
            )
            for font in fonts:
                charsets.append(frozenset(font.getBestCmap() or ()))
        # a file fontTools cannot read (Type 1, bitmap fonts): Chromium skips them too
        except Exception:
            continue
    return charsets


def test_every_character_has_a_glyph(visits):
    """No text on any page shows the missing-glyph box: every character is in some
    installed font.

    Chromium draws a character with the first font that has it, falling back through
    every font fontconfig knows; a character that none has becomes an empty box. So
    each distinct character of the site's text (math aside, which MathJax draws with
    its own web fonts) must be in the character map of an installed font. The book
    has
    Chinese and Japanese text (the translation section's dates, the errata's quoted comments):
        without a CJK font
    (`apt-get install fonts-noto-cjk`, as .ci/run does) this fails.
    """
    chars = set().union(*(set(v.characters) for v in visits.values()))
    assert "\ufffd" not in chars, "a page has U+FFFD, text that was not valid UTF-8"
    # not controls, format marks or spaces
    drawn = {c for c in chars if unicodedata.category(c)[0] not in "CZ"}
    assert any("\u4e00" <= c <= "\u9fff" for c in drawn), (
        "no CJK text on the site: the check saw nothing"
    )
    covered = set()
    for charset in _font_charsets():
        covered |= {c for c in drawn if ord(c) in charset}
        if covered == drawn:
            break
    missing = sorted(drawn - covered)
    assert not missing, (
        f"characters no installed font can draw: "
        f"{[f'U+{ord(c):04X} {c}' for c in missing]}"
    )


def _executed_cells():
    """``(notebook, cell source, outputs)`` of every code cell of every chapter, as
    the site shows it.

    The outputs come from the build's execution cache (``_build/.jupyter_cache``),
    which holds what myst-nb put on the pages, whether a notebook ran in this build
    or an earlier one (``_build/jupyter_execute`` keeps outputs only for the
    notebooks the last build executed itself): the entry that matches the notebook's
    code, or, where the notebook was edited after the build, the entry a build used
    last.
    """
    import nbformat
    from jupyter_cache import get_cache

    cache_dir = SITE.parent / ".jupyter_cache"
    if not cache_dir.is_dir():
        _unavailable(f"no execution cache in {cache_dir} (build with make book)")
    cache = get_cache(str(cache_dir))
    records = cache.list_cache_records()
    for page in _toc_pages():
        path = ROOT / (page[: -len(".html")] + ".ipynb")
        if not path.is_file():
            continue
        # the version of the notebook as it is now, else the one a build used last (it
        # changed since)
        try:
            record = cache.match_cache_notebook(
                nbformat.read(path, nbformat.NO_CONVERT)
            )
        except KeyError:
            mine = [r for r in records if Path(r.uri) == path]
            if not mine:
                pytest.fail(
                    f"{path.name} has no executed version in {cache_dir}: "
                    f"rebuild the site (make book)"
                )
            record = max(mine, key=lambda r: r.accessed)
        for cell in cache.get_cache_bundle(record.pk).nb.cells:
            if cell.cell_type == "code":
                yield path.name, cell.source, cell.get("outputs", [])


def test_figures_have_every_glyph(site):
    """No figure has the missing-glyph box: matplotlib warned about no missing glyph
    while the notebooks ran.

    matplotlib warns ("Glyph 24180 (...) missing from font(s) DejaVu Sans.") whenever
    it draws a character that none of its fonts has, and draws a box instead; the
    warning lands in the stderr of the cell that drew the figure, kept with the
    cell's outputs even where the page hides stderr. A figure with Chinese text must
    exist, so that the check is not vacuous.
    """
    warnings, cjk_figures = [], 0
    for name, source, outputs in _executed_cells():
        for out in outputs:
            text = out.get("text", "")
            text = text if isinstance(text, str) else "".join(text)
            warnings += [
                f"{name}: {line.strip()}"
                for line in text.splitlines()
                if MISSING_GLYPH.search(line)
            ]
        if re.search("[\u4e00-\u9fff]", source) and any(
            "image/png" in o.get("data", {}) for o in outputs
        ):
            cjk_figures += 1
    assert not warnings, "figures drawn with missing glyphs:\n" + "\n".join(warnings)
    assert cjk_figures, "no figure with Chinese text was drawn: the check saw nothing"


# --------------------------------------------------------------------------------------
# On a phone: every page at 390 px.
# --------------------------------------------------------------------------------------

_PHONE_JS = """
async () => {
  if (window.MathJax && window.MathJax.startup && window.MathJax.startup.promise) {
    await window.MathJax.startup.promise;
  }
  const W = document.documentElement.clientWidth;
  const scrolls = e => ["auto", "scroll"].includes(getComputedStyle(e).overflowX);
  const article = document.querySelector(".bd-article") || document.body;
  const unscrolled = [];
  let scrolled = 0;
  for (const e of article.querySelectorAll("table, div.math, mjx-container[display='true']")) {
    const r = e.getBoundingClientRect();
    if (!r.width) { continue; }
    const name = `${e.tagName.toLowerCase()} "${(e.textContent || "").trim().slice(0, 50)}"`;
    if (e.scrollWidth > e.clientWidth + 1) {            // content wider than its own box: the box must scroll
      if (scrolls(e)) { scrolled++; } else { unscrolled.push(name + " (its box does not scroll)"); }
    }
    if (r.right > W + 1) {                               // a box wider than the screen: an ancestor must scroll
      let a = e.parentElement;
      while (a && a !== article && !scrolls(a)) { a = a.parentElement; }
      if (a && a !== article && a.getBoundingClientRect().right <= W + 1) { scrolled++; }
      else { unscrolled.push(name + " (wider than the screen)"); }
    }
  }
  const toggle = Array.from(document.querySelectorAll(".primary-toggle")).some(b => {
    const r = b.getBoundingClientRect();
    return r.width > 0 && r.left >= 0 && r.right <= W && getComputedStyle(b).visibility !== "hidden"; });
  return {scrollWidth: document.documentElement.scrollWidth, unscrolled, scrolled, toggle};
}
"""


@pytest.fixture(scope="module")
def phone_visits(site, base_url, browser):
    """Visit every page on a phone-sized screen."""
    results = {}
    for rel in _site_pages(site):
        record = _Page(rel)
        context, page = _new_page(browser, base_url, record, viewport=PHONE)
        try:
            page.goto(base_url + rel, wait_until="load")
            page.wait_for_load_state("networkidle")
            results[rel] = page.evaluate(_PHONE_JS)
        finally:
            context.close()
        results[rel]["errors"] = record.console_errors
    return results


def test_phone_pages_do_not_scroll_sideways(phone_visits):
    wide = {
        p: f["scrollWidth"]
        for p, f in phone_visits.items()
        if f["scrollWidth"] > PHONE["width"]
    }
    assert not wide, f"pages wider than a {PHONE['width']} px screen: {wide}"
    errors = {p: f["errors"] for p, f in phone_visits.items() if f["errors"]}
    assert not errors, f"JavaScript console errors on a phone: {errors}"


def test_phone_wide_tables_and_equations_scroll_in_their_own_box(phone_visits):
    unscrolled = {
        p: f["unscrolled"] for p, f in phone_visits.items() if f["unscrolled"]
    }
    assert not unscrolled, (
        f"tables and equations wider than the screen that do not scroll: {unscrolled}"
    )
    # The book has wide tables and equations, so a phone must have met some: the check
    # saw something.
    assert sum(f["scrolled"] for f in phone_visits.values()) > 0


def test_phone_navigation(phone_visits, base_url, browser):
    """Every page has the menu button on a phone; on a chapter it opens the table of
    contents, whose links work."""
    without = [p for p, f in phone_visits.items() if not f["toggle"]]
    assert not without, f"pages without a visible menu button on a phone: {without}"
    start = _toc_pages()[3]
    record = _Page(start)
    context, page = _new_page(browser, base_url, record, viewport=PHONE)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        page.goto(base_url + start, wait_until="load")
        page.evaluate(
            "() => window.MathJax && MathJax.startup && MathJax.startup.promise"
        )
        page.screenshot(path=str(SCREENSHOTS / "chapter-390.png"))
        page.locator(".primary-toggle").locator("visible=true").first.click()
        # The menu shows the chapters: follow the last one it lists (a page other than
        # this one).
        links = page.locator(
            "#pst-primary-sidebar-modal a.reference.internal, "
            ".bd-sidebar-primary a.reference.internal"
        )
        links = links.locator("visible=true")
        links.first.wait_for(timeout=5_000)
        link = links.last
        box = link.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], box
        target = urllib.parse.urljoin(page.url, link.get_attribute("href")).split("#")[
            0
        ]
        assert target != page.url.split("#")[0]
        page.screenshot(path=str(SCREENSHOTS / "menu-390.png"))
        link.click()
        page.wait_for_url(target, timeout=10_000)
    finally:
        context.close()
    assert not record.console_errors, record.console_errors


# --------------------------------------------------------------------------------------
# Interactive parts and screenshots.
# --------------------------------------------------------------------------------------


def _math_page(visits):
    return max(visits, key=lambda p: visits[p].math_elements)


def _tab_pages(site):
    """Pages with at least two tab sets of the ``framework`` sync group, most tab
    sets first."""
    counts = {}
    for rel in _site_pages(site):
        html = (site / rel).read_text(encoding="utf8", errors="replace")
        n = len(
            set(
                re.findall(
                    r'data-sync-group="framework"[^>]*for="(sd-tab-item-\d+)"', html
                )
            )
        )
        if html.count('class="sd-tab-set') >= 2 and n >= 6:
            counts[rel] = n
    return sorted(counts, key=counts.get, reverse=True)


def _selected_frameworks(page):
    """For each framework tab set on the page, the sync id of its checked tab (and
    whether its content shows)."""
    return page.evaluate(
        """() => Array.from(document.querySelectorAll('.sd-tab-set'))
              .filter(s => s.querySelector('label[data-sync-group="framework"]'))
              .map(s => {
                 const input = s.querySelector(':scope > input:checked');
                 const label = input && s.querySelector(`label[for="${input.id}"]`);
                 const content = input && input.nextElementSibling && input.nextElementSibling.nextElementSibling;
                 return [label ? label.dataset.syncId : null,
                         !!content && getComputedStyle(content).display !== 'none'];
              })"""
    )


def test_framework_tabs_switch_and_stay_in_sync(site, base_url, browser):
    pages = _tab_pages(site)
    assert pages, "no page has two or more synced framework tab sets"
    record = _Page(pages[0])
    context, page = _new_page(browser, base_url, record)
    try:
        page.goto(base_url + pages[0], wait_until="load")
        initial = _selected_frameworks(page)
        assert len(initial) >= 2 and all(sel == ["numpy", True] for sel in initial), (
            initial
        )
        labels = page.locator('label.sd-tab-label[data-sync-group="framework"]')
        # Click TensorFlow in the FIRST tab set: every set follows.
        labels.and_(page.locator('[data-sync-id="tensorflow"]')).first.click()
        assert all(sel == ["tensorflow", True] for sel in _selected_frameworks(page)), (
            _selected_frameworks(page)
        )
        # Click PyTorch in the LAST tab set: every set follows again.
        last = labels.and_(page.locator('[data-sync-id="torch"]')).last
        last.scroll_into_view_if_needed()
        last.click()
        assert all(sel == ["torch", True] for sel in _selected_frameworks(page)), (
            _selected_frameworks(page)
        )
        # The choice is remembered: another page with framework tabs opens on PyTorch.
        other = pages[1] if len(pages) > 1 else pages[0]
        page.goto(base_url + other, wait_until="load")
        assert all(sel == ["torch", True] for sel in _selected_frameworks(page)), (
            _selected_frameworks(page)
        )
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.locator(".sd-tab-set").first.scroll_into_view_if_needed()
        page.screenshot(path=str(SCREENSHOTS / "tabs.png"))
    finally:
        context.close()
    assert not record.console_errors, record.console_errors


def test_search_finds_softmax(site, base_url, browser):
    record = _Page("search.html")
    context, page = _new_page(browser, base_url, record)
    try:
        page.goto(base_url + "search.html?q=softmax", wait_until="load")
        results = page.locator("ul.search li")
        results.first.wait_for(timeout=SEARCH_TIMEOUT)
        # Sphinx appends results one by one; wait until the summary line reports the
        # search finished.
        page.wait_for_function(
            "() => /found \\d+ page|did not "
            "match/i.test(document.querySelector('#search-results')?.innerText || '')",
            timeout=SEARCH_TIMEOUT,
        )
        hrefs = [a.get_attribute("href") for a in page.locator("ul.search li a").all()]
    finally:
        context.close()
    assert (
        len(results_pages := {h.split("#")[0].split("?")[0] for h in hrefs if h}) >= 2
    ), hrefs
    assert any("04_math" in h or "03_algorithm" in h for h in results_pages), (
        results_pages
    )
    assert not record.console_errors, record.console_errors


def _luminance(css_color):
    r, g, b = (int(x) / 255 for x in re.findall(r"[\d.]+", css_color)[:3])

    def lin(c):
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b)


def _contrast(fg, bg):
    a, b = sorted((_luminance(fg), _luminance(bg)), reverse=True)
    return (a + 0.05) / (b + 0.05)


_THEME_JS = """() => {
  const main = document.querySelector('.bd-article') || document.body;
  const p = main.querySelector('p') || main;
  const visible = sel => { const e = document.querySelector(sel); return !!e && getComputedStyle(e).display !== 'none'
                                                                       && e.getBoundingClientRect().width > 0; };
  const img = document.querySelector('.cell_output img');
  return {
    theme: document.documentElement.dataset.theme,
    bg: getComputedStyle(document.body).backgroundColor,
    fg: getComputedStyle(p).color,
    logoLight: visible('img.logo__image.only-light'),
    logoDark: visible('img.logo__image.only-dark'),
    imgBg: img ? getComputedStyle(img).backgroundColor : null,
    imgFilter: img ? getComputedStyle(img).filter : null,
  };
}"""


def test_light_and_dark_themes_are_readable(visits, base_url, browser):
    # A page with figures and math: the one with the most figures (cell output images).
    page_path = max(
        visits, key=lambda p: (visits[p].output_images, visits[p].math_elements)
    )
    assert visits[page_path].output_images > 0
    record = _Page(page_path)
    context, page = _new_page(browser, base_url, record)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        page.goto(base_url + page_path, wait_until="load")
        light = page.evaluate(_THEME_JS)
        assert light["theme"] == "light"
        assert _contrast(light["fg"], light["bg"]) >= 7, light
        assert light["logoLight"] and not light["logoDark"], light
        # The theme switch button cycles light -> dark -> auto; click it until the page
        # is dark.
        button = page.locator(".theme-switch-button").first
        for _ in range(3):
            if page.evaluate("() => document.documentElement.dataset.theme") == "dark":
                break
            button.click()
        dark = page.evaluate(_THEME_JS)
        assert dark["theme"] == "dark", "the theme switch did not reach the dark theme"
        assert _luminance(dark["bg"]) < 0.05, dark
        assert _contrast(dark["fg"], dark["bg"]) >= 7, dark
        assert dark["logoDark"] and not dark["logoLight"], dark
        if dark["imgBg"] is not None:
            # Figures drawn for white paper sit on a white plate, undimmed.
            assert _luminance(dark["imgBg"]) > 0.95 and dark["imgFilter"] in (
                "none",
                None,
            ), dark
        # Show a figure on its plate in the screenshot, not just the page header.
        page.locator(".cell_output img").first.scroll_into_view_if_needed()
        page.screenshot(path=str(SCREENSHOTS / "dark.png"))
    finally:
        context.close()
    assert not record.console_errors, record.console_errors


_EXPLORER_STATE_JS = """root => {
  const data = JSON.parse(root.querySelector("script.abx-data").textContent);
  const keys = Array.from(root.querySelectorAll(".abx-k"));
  return {
    data,
    shown: keys.map(k => k.hasAttribute("data-weight") ? Number(k.getAttribute("data-weight")) : null),
    alpha: keys.map(k => { const m = getComputedStyle(k).backgroundColor.match(/rgba?\\(([^)]*)\\)/);
                           const v = m ? m[1].split(",").map(Number) : [];
                           return v.length === 4 ? v[3] : (v.length === 3 ? 1 : 0); }),
    layer: Number(root.dataset.layer), head: Number(root.dataset.head), query: root.dataset.query,
    headButtons: root.querySelectorAll(".abx-head").length,
    selectedHead: Number(root.querySelector(".abx-head-select").value),
  };
}"""


def _explorer_pages(site):
    return [
        rel
        for rel in _site_pages(site)
        if "data-attnbook-explorer"
        in (site / rel).read_text(encoding="utf8", errors="replace")
    ]


def test_attention_explorer(site, base_url, browser):
    """The explorer of the MiniLM chapter: pick a layer and a head, hover a token,
    and the keys show exactly that row of the weights embedded in the page; clicking
    a head of the overview selects it; a click pins a row."""
    pages = _explorer_pages(site)
    assert "book/06c_inside_minilm.html" in pages, pages
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for rel in pages:
        record = _Page(rel)
        context, page = _new_page(browser, base_url, record)
        try:
            page.goto(base_url + rel, wait_until="load")
            roots = page.locator(".attnbook-explorer")
            assert roots.count() > 0
            for n in range(roots.count()):
                root = roots.nth(n)
                root.scroll_into_view_if_needed()
                data = root.evaluate(_EXPLORER_STATE_JS)["data"]
                n_layers, n_heads = len(data["layers"]), len(data["heads"])
                n_queries, n_keys = len(data["queries"]), len(data["keys"])
                assert (
                    len(data["weights"]) == n_layers
                    and len(data["weights"][0]) == n_heads
                )
                assert (
                    root.locator(".abx-q").count() == n_queries
                    and root.locator(".abx-k").count() == n_keys
                )
                # Not the defaults (layer 0, head 0): the last layer, a middle head, a
                # query from the middle.
                layer, head, query = n_layers - 1, n_heads // 2, n_queries // 2
                root.locator("select.abx-layer").select_option(str(layer))
                root.locator("select.abx-head-select").select_option(str(head))
                root.locator(".abx-q").nth(query).hover()
                state = root.evaluate(_EXPLORER_STATE_JS)
                row = data["weights"][layer][head][query]
                assert (state["layer"], state["head"], state["query"]) == (
                    layer,
                    head,
                    str(query),
                ), state
                assert state["shown"] == row, (
                    f"{rel}: the keys show {state['shown']}, the data row is {row}"
                )
                assert all(
                    abs(a - w) <= 1 / 255 + 1e-6
                    for a, w in zip(state["alpha"], row, strict=True)
                ), state
                assert state["headButtons"] == n_heads
                # The head overview selects a head; the hovered row follows it.
                other = (head + 1) % n_heads
                root.locator(".abx-head").nth(other).click()
                root.locator(".abx-q").nth(query).hover()
                state = root.evaluate(_EXPLORER_STATE_JS)
                assert state["head"] == state["selectedHead"] == other
                assert state["shown"] == data["weights"][layer][other][query]
                # A click pins the row: moving away keeps it, a second click releases
                # it.
                root.locator(".abx-q").nth(0).click()
                page.mouse.move(0, 0)
                state = root.evaluate(_EXPLORER_STATE_JS)
                assert (
                    state["query"] == "0"
                    and state["shown"] == data["weights"][layer][other][0]
                ), state
                if rel == "book/06c_inside_minilm.html" and n == 0:
                    root.locator(".abx-q").nth(query).hover()
                    root.screenshot(path=str(SCREENSHOTS / "explorer.png"))
        finally:
            context.close()
        assert not record.console_errors, record.console_errors
    assert (SCREENSHOTS / "explorer.png").stat().st_size > 10_000


def test_screenshots_of_key_pages(visits, base_url, browser):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shots = {
        "index.png": "book/index.html",
        "math.png": _math_page(visits),
        "chapter-1280.png": "book/06c_inside_minilm.html",
    }
    for name, rel in shots.items():
        record = _Page(rel)
        context, page = _new_page(browser, base_url, record)
        try:
            page.goto(base_url + rel, wait_until="load")
            page.evaluate(
                "() => window.MathJax && MathJax.startup && MathJax.startup.promise"
            )
            if name == "math.png":
                page.locator("mjx-container").nth(3).scroll_into_view_if_needed()
            page.screenshot(path=str(SCREENSHOTS / name))
        finally:
            context.close()
        assert (SCREENSHOTS / name).stat().st_size > 10_000, f"{name} looks empty"
