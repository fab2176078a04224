"""The built website, checked in a real browser: headless Chromium, driven by Playwright, over every page.

What a reader would notice first is checked on every HTML page of the site: JavaScript errors, images that do not
load, equations left as raw TeX, broken internal links and anchors. Then the interactive parts: the synced framework
tabs, the search page, and the dark theme. Screenshots of a few key pages go to ``_build/screenshots/``.

The site is ``_build/html`` (what ``make book`` writes; ``ATTNBOOK_SITE`` points elsewhere). It is reused when it is
complete, and built with the same command as ``make book`` when a page of ``_toc.yml`` is missing from it.

The browser is the system's Chromium (Debian's ``chromium`` package), never one downloaded by Playwright. Without it
the tests skip; with ``CI=true`` they fail instead, because CI installs the browser itself (``.ci/run``).
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
import urllib.parse
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SITE = Path(os.environ.get("ATTNBOOK_SITE", ROOT / "_build" / "html"))
SCREENSHOTS = Path(os.environ.get("ATTNBOOK_SCREENSHOTS", ROOT / "_build" / "screenshots"))
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# Text that must not survive typesetting: display-math fences and TeX commands that only appear in math.
RAW_TEX = re.compile(r"\$\$|\\frac|\\begin\{|\\sqrt\{|\\operatorname")
# How long (ms) to wait for MathJax on one page, and for the search index.
MATHJAX_TIMEOUT = 30_000
SEARCH_TIMEOUT = 30_000


def _unavailable(reason):
    """Skip on a reader's machine; fail in CI, where every prerequisite is installed on purpose."""
    if IN_CI:
        pytest.fail(f"{reason} (required when CI=true)")
    pytest.skip(reason)


def _find_chromium():
    for candidate in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if candidate and (path := shutil.which(candidate)):
            return path
    return None


def _toc_pages():
    """Site-relative HTML paths of every page named in ``_toc.yml`` (so new chapters are covered automatically)."""
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


# --------------------------------------------------------------------------------------------------------------
# Fixtures: the site, a local server, the browser, and one visit of every page.
# --------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium_path():
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _unavailable("playwright is not installed (pip install playwright; no browser download needed)")
    path = _find_chromium()
    if path is None:
        _unavailable("no Chromium found (apt-get install chromium, or set CHROMIUM=/path/to/chrome)")
    return path


@pytest.fixture(scope="module")
def site(chromium_path):
    """The built site directory, built first if it is missing or lacks a page of the table of contents."""
    missing = [p for p in _toc_pages() if not (SITE / p).is_file()]
    if missing:
        if "ATTNBOOK_SITE" in os.environ:
            pytest.fail(f"ATTNBOOK_SITE={SITE} lacks {missing}")
        jb = Path(sys.executable).with_name("jupyter-book")
        # The same command as `make book`, so the reused and the freshly built site are the same thing.
        cmd = [str(jb), "build", str(ROOT), "--builder", "html", "--warningiserror", "--nitpick", "--keep-going"]
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
        browser = pw.chromium.launch(executable_path=chromium_path, headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()


def _site_pages(site):
    """Every HTML page of the site: chapters, index, search, general index (not the theme's static files)."""
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
        self.untypeset_math = 0
        self.math_elements = 0
        self.raw_tex: list[str] = []
        self.links: list[str] = []
        self.ids: set[str] = set()


def _new_page(browser, base_url, record):
    """A page whose errors go to ``record`` and which may not fetch anything outside the local server: the site
    must be self-contained (CI and readers offline have no CDN)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme="light")
    page = context.new_page()

    def route(r):
        url = r.request.url
        if url.startswith(base_url) or url.startswith("data:") or url.startswith("blob:"):
            r.continue_()
        else:
            record.external_requests.append(url)
            r.abort()

    page.route("**/*", route)
    page.on("console", lambda m: m.type == "error" and record.console_errors.append(f"{m.text} @ {m.location}"))
    page.on("pageerror", lambda e: record.console_errors.append(f"uncaught: {e}"))
    return context, page


# Runs in the page: wait for MathJax (if the page loads it), make lazy images load, then report.
_INSPECT_JS = """
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
  return {broken, images: imgs.length, outputImages, maths: maths.length, untypeset, text: texts.join(" "), links, ids};
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
        record.math_elements = found["maths"]
        record.untypeset_math = found["untypeset"]
        record.raw_tex = sorted({m.group(0) for m in RAW_TEX.finditer(found["text"])})
        record.links = found["links"]
        record.ids = set(found["ids"])
        results[rel] = record
    return results


# --------------------------------------------------------------------------------------------------------------
# Every page.
# --------------------------------------------------------------------------------------------------------------


def test_every_toc_page_was_visited(visits):
    pages = set(visits)
    assert set(_toc_pages()) <= pages, f"toc pages missing from the site: {set(_toc_pages()) - pages}"
    assert {"search.html", "genindex.html"} <= pages


def test_no_javascript_errors(visits):
    errors = {p: v.console_errors for p, v in visits.items() if v.console_errors}
    assert not errors, f"JavaScript console errors: {errors}"


def test_site_is_self_contained(visits):
    """No page fetches scripts, styles, fonts or images from the internet (MathJax is bundled)."""
    external = {p: v.external_requests for p, v in visits.items() if v.external_requests}
    assert not external, f"pages load resources from outside the site: {external}"


def test_every_image_loads(visits):
    # The chapters have figures, so a site without images means the check saw nothing.
    assert sum(v.output_images for v in visits.values()) >= 5
    broken = {p: v.broken_images for p, v in visits.items() if v.broken_images}
    assert not broken, f"images that did not load: {broken}"


def test_math_is_typeset(visits, site):
    # The math chapter must have equations at all, or this test would pass vacuously.
    with_math = [p for p, v in visits.items() if v.math_elements]
    assert with_math, "no page has math elements"
    assert any(v.math_elements >= 20 for v in visits.values())
    untypeset = {p: f"{v.untypeset_math}/{v.math_elements}" for p, v in visits.items() if v.untypeset_math}
    assert not untypeset, f"math elements MathJax did not typeset: {untypeset}"
    raw = {p: v.raw_tex for p, v in visits.items() if v.raw_tex}
    assert not raw, f"raw TeX left in the visible text: {raw}"
    assert (site / "_static" / "mathjax" / "tex-chtml.js").is_file(), "MathJax is not bundled with the site"


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
                continue  # external links (GitHub, Colab, DOIs) are not fetched: CI has no internet
            url = urllib.parse.urlsplit(href)
            target = url.path[len(urllib.parse.urlsplit(base_url).path):]
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
                    ids = set(re.findall(r'\bid="([^"]+)"', html)) | set(re.findall(r'\bname="([^"]+)"', html))
                    ids_of[target_rel] = ids
                if fragment not in ids:
                    broken.append(f"{rel} -> {href} (no anchor #{fragment})")
    assert not broken, "broken internal links:\n" + "\n".join(sorted(set(broken)))


def test_launch_download_and_repository_buttons(visits, base_url):
    """Every chapter page links its source (download), the repository, edit and issue pages; notebook pages also
    open in Colab and Binder. All URLs derive from `repository:` in _config.yml."""
    import yaml

    repo = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf8"))["repository"]
    url, branch = repo["url"].rstrip("/"), repo.get("branch", "main")
    colab = url.replace("https://github.com/", "https://colab.research.google.com/github/")
    binder = url.replace("https://github.com/", "https://mybinder.org/v2/gh/")
    problems = []
    for page in _toc_pages():
        stem = page[: -len(".html")]
        source = next((stem + ext for ext in (".ipynb", ".md") if (ROOT / (stem + ext)).is_file()), None)
        assert source, f"no source file for {page}"
        links = set(visits[page].links)
        expected = [f"{base_url}_sources/{source}", url, f"{url}/edit/{branch}/{source}", f"{url}/issues/new"]
        if source.endswith(".ipynb"):
            expected += [f"{colab}/blob/{branch}/{source}", f"{binder}/{branch}?urlpath=tree/{source}"]
        for link in expected:
            if not any(have == link or have.startswith(link + "?") or (link.endswith("/new") and link in have)
                       for have in links):
                problems.append(f"{page}: no link to {link}")
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------------------------------------------
# Interactive parts and screenshots.
# --------------------------------------------------------------------------------------------------------------


def _math_page(visits):
    return max(visits, key=lambda p: visits[p].math_elements)


def _tab_pages(site):
    """Pages with at least two tab sets of the ``framework`` sync group, most tab sets first."""
    counts = {}
    for rel in _site_pages(site):
        html = (site / rel).read_text(encoding="utf8", errors="replace")
        n = len(set(re.findall(r'data-sync-group="framework"[^>]*for="(sd-tab-item-\d+)"', html)))
        if html.count('class="sd-tab-set') >= 2 and n >= 6:
            counts[rel] = n
    return sorted(counts, key=counts.get, reverse=True)


def _selected_frameworks(page):
    """For each framework tab set on the page, the sync id of its checked tab (and whether its content shows)."""
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
        assert len(initial) >= 2 and all(sel == ["numpy", True] for sel in initial), initial
        labels = page.locator('label.sd-tab-label[data-sync-group="framework"]')
        # Click TensorFlow in the FIRST tab set: every set follows.
        labels.and_(page.locator('[data-sync-id="tensorflow"]')).first.click()
        assert all(sel == ["tensorflow", True] for sel in _selected_frameworks(page)), _selected_frameworks(page)
        # Click PyTorch in the LAST tab set: every set follows again.
        last = labels.and_(page.locator('[data-sync-id="torch"]')).last
        last.scroll_into_view_if_needed()
        last.click()
        assert all(sel == ["torch", True] for sel in _selected_frameworks(page)), _selected_frameworks(page)
        # The choice is remembered: another page with framework tabs opens on PyTorch.
        other = pages[1] if len(pages) > 1 else pages[0]
        page.goto(base_url + other, wait_until="load")
        assert all(sel == ["torch", True] for sel in _selected_frameworks(page)), _selected_frameworks(page)
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
        # Sphinx appends results one by one; wait until the summary line reports the search finished.
        page.wait_for_function(
            "() => /found \\d+ page|did not match/i.test(document.querySelector('#search-results')?.innerText || '')",
            timeout=SEARCH_TIMEOUT,
        )
        hrefs = [a.get_attribute("href") for a in page.locator("ul.search li a").all()]
    finally:
        context.close()
    assert len(results_pages := {h.split("#")[0].split("?")[0] for h in hrefs if h}) >= 2, hrefs
    assert any("04_math" in h or "03_algorithm" in h for h in results_pages), results_pages
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
    page_path = max(visits, key=lambda p: (visits[p].output_images, visits[p].math_elements))
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
        # The theme switch button cycles light -> dark -> auto; click it until the page is dark.
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
            assert _luminance(dark["imgBg"]) > 0.95 and dark["imgFilter"] in ("none", None), dark
        # Show a figure on its plate in the screenshot, not just the page header.
        page.locator(".cell_output img").first.scroll_into_view_if_needed()
        page.screenshot(path=str(SCREENSHOTS / "dark.png"))
    finally:
        context.close()
    assert not record.console_errors, record.console_errors


def test_screenshots_of_key_pages(visits, base_url, browser):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shots = {"index.png": "book/index.html", "math.png": _math_page(visits)}
    for name, rel in shots.items():
        record = _Page(rel)
        context, page = _new_page(browser, base_url, record)
        try:
            page.goto(base_url + rel, wait_until="load")
            page.evaluate("() => window.MathJax && MathJax.startup && MathJax.startup.promise")
            if name == "math.png":
                page.locator("mjx-container").nth(3).scroll_into_view_if_needed()
            page.screenshot(path=str(SCREENSHOTS / name))
        finally:
            context.close()
        assert (SCREENSHOTS / name).stat().st_size > 10_000, f"{name} looks empty"
