"""Put the first two cells of every chapter notebook in the book's shape; idempotent.

    .venv/bin/python book/_ext/notebook_setup.py  # rewrite book/*.ipynb in place
    # list the notebooks it would change
    .venv/bin/python book/_ext/notebook_setup.py --check

Run it after adding a chapter, after changing ``version`` in ``pyproject.toml`` (a
release) and after changing ``repository: url:`` in ``_config.yml``;
``tests/test_notebook_setup.py`` fails until it has been run.

# Title`` moves to the top, so
1. **The title comes first.** The markdown cell that opens with the chapter's `` the
   web page starts with the title, not with the collapsed "Show code cell content" of
   the set-up cell.
2. **The set-up cell is the first code cell**, and its text is generated here (not
   edited by hand): on Colab, and only there, it installs the release of attnbook
   whose version ``pyproject.toml`` declares, from the git tag ``v<version>`` of the
   repository ``_config.yml`` names. A tag, not a branch: a reader who opens a
   chapter on Colab gets the package the book was built and tested with, not whatever
   ``main`` holds that day. (The release workflow refuses a tag that differs from the
   version, so the tag and the PyPI release are the same commit.)

Only those two cells change (a notebook without a set-up cell gets one); every other
cell, its id and its metadata are kept byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "book"
SETUP_MARKER = "# Setup: on Colab, install attnbook"
EXTRAS = "book"
SETUP_TEMPLATE = """\
# Setup: on Colab, install attnbook (this book's release) and the book's extras;
# everywhere else this cell does nothing.
import os
import sys

if "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ:
    %pip install -q "attnbook[{extras}] @ git+{url}@v{version}\""""


def project_version(root=ROOT):
    """``version`` of ``[project]`` in ``pyproject.toml``."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    return tomllib.loads((root / "pyproject.toml").read_text(encoding="utf8"))[
        "project"
    ]["version"]


def repository_url(root=ROOT):
    """``repository: url:`` of ``_config.yml``, without a trailing slash."""
    import yaml

    config = yaml.safe_load((root / "_config.yml").read_text(encoding="utf8"))
    return config["repository"]["url"].rstrip("/")


def setup_source(version, url, extras=EXTRAS):
    """The text of the set-up cell for one release."""
    return SETUP_TEMPLATE.format(version=version, url=url, extras=extras)


def _text(cell):
    source = cell["source"]
    return source if isinstance(source, str) else "".join(source)


def _lines(text):
    """A cell's source as Jupyter writes it: a list of lines, each but the last
    ending in a newline."""
    return text.splitlines(keepends=True)


def _is_setup(cell):
    return cell["cell_type"] == "code" and _text(cell).startswith(SETUP_MARKER)


def _is_title(cell):
    return cell["cell_type"] == "markdown" and _text(cell).lstrip().startswith("# ")


def normalise(nb, version, url):
    """Return ``nb`` (a notebook as parsed JSON) with its title first and its set-up
    cell second and current.

    A notebook without a set-up cell gets one (collapsed on the page: tag
    ``hide-cell``). Raises ``ValueError`` for a notebook without a markdown cell that
    opens with a ``# Title``.
    """
    cells = list(nb["cells"])
    title = next((i for i, c in enumerate(cells) if _is_title(c)), None)
    if title is None:
        raise ValueError("no markdown cell starting with a '# Title' heading")
    setup = next((i for i, c in enumerate(cells) if _is_setup(c)), None)
    source = _lines(setup_source(version, url))
    if setup is None:
        cell_id = hashlib.sha1(_text(cells[title]).encode("utf8")).hexdigest()[:8]
        setup_cell = {
            "cell_type": "code",
            "execution_count": None,
            "id": cell_id,
            "metadata": {"tags": ["hide-cell"]},
            "outputs": [],
            "source": source,
        }
    else:
        setup_cell = cells[setup]
        if setup_cell["source"] != source:
            setup_cell = dict(setup_cell, source=source)
    title_cell = cells[title]
    rest = [c for i, c in enumerate(cells) if i not in (setup, title)]
    return dict(nb, cells=[title_cell, setup_cell, *rest])


def dumps(nb):
    """The notebook as Jupyter writes it (one-space indent, UTF-8 unescaped, final
    newline)."""
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def run(paths, *, check=False, root=ROOT):
    """Normalise each notebook of ``paths``; return the paths that changed (with
    ``check``: that would change)."""
    version, url = project_version(root), repository_url(root)
    changed = []
    for path in paths:
        path = Path(path)
        text = path.read_text(encoding="utf8")
        try:
            new = dumps(normalise(json.loads(text), version, url))
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None
        if new != text:
            changed.append(path)
            if not check:
                path.write_text(new, encoding="utf8")
    return changed


def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    check = "--check" in args
    paths = [a for a in args if a != "--check"] or sorted(NOTEBOOKS.glob("*.ipynb"))
    changed = run(paths, check=check)
    for path in changed:
        print(f"{'would change' if check else 'changed'}: {path}")
    return 1 if check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
