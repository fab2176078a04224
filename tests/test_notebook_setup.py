"""Every notebook opens on Colab ready to run, and runs unchanged everywhere else.

# Title`` (so the web page starts
Each ``book/*.ipynb`` (new chapters included: the list is a glob) opens with its ``
with the chapter's title), and its first *code* cell is the setup cell that, on Colab
only, ``%pip install``s the release of attnbook whose version ``pyproject.toml``
declares (the git tag ``v<version>``) with its extras, from the repository named in
``_config.yml``. Both cells are kept so by ``book/_ext/notebook_setup.py`` (run it
after adding a chapter or changing the version). The setup cell is executed here the
way IPython would run it (magics transformed, ``get_ipython`` faked): outside Colab
it must do nothing at all, and on Colab exactly one ``pip install`` of that URL and
tag. Notebooks that use PyTorch must put their tensors on
``attnbook.devices.torch_device()``, so that the same notebook uses Colab's GPU.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import yaml

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))
INSTALL = re.compile(
    r'^\s*%pip install -q "attnbook\[(?P<extras>[\w,\s-]+)\] @ '
    r'git\+(?P<url>[^"@]+)'
    r'(?:@(?P<ref>[^"]+))?"\s*$',
    re.M,
)
COLAB_TEST = 'if "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ:'


def _repository_url():
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf8"))
    return config["repository"]["url"].rstrip("/")


def _version():
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf8"))[
        "project"
    ]["version"]


def _source(cell):
    return (
        cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
    )


def _first_cell(path):
    """The first *code* cell: the setup cell (markdown, the title, comes before it)."""
    nb = json.loads(path.read_text(encoding="utf8"))
    cell = next(c for c in nb["cells"] if c["cell_type"] == "code")
    return cell, _source(cell)


def _notebook_setup():
    """book/_ext/notebook_setup.py, the script that writes the first two cells."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "notebook_setup", ROOT / "book" / "_ext" / "notebook_setup.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _code(path):
    nb = json.loads(path.read_text(encoding="utf8"))
    return "\n".join(
        c["source"] if isinstance(c["source"], str) else "".join(c["source"])
        for c in nb["cells"]
        if c["cell_type"] == "code"
    )


class _FakeIPython:
    """Records the magics a cell runs instead of running them."""

    def __init__(self):
        self.calls = []

    def run_line_magic(self, name, line, _stack_depth=1):
        self.calls.append((name, line))

    def run_cell_magic(self, name, line, cell):
        self.calls.append((name, line, cell))

    def system(self, cmd):
        self.calls.append(("!", cmd))


def _as_python(source):
    """The cell as IPython runs it: magics transformed into
    ``get_ipython().run_line_magic(...)`` calls."""
    from IPython.core.inputtransformer2 import TransformerManager

    python = TransformerManager().transform_cell(source)
    assert "%pip" not in python  # the magic really was transformed
    return python


def _run_setup_cell(python):
    """Execute the transformed cell with a fake ``get_ipython``; return the magics it
    ran and its namespace."""
    shell = _FakeIPython()
    namespace = {"get_ipython": lambda: shell}
    exec(compile(python, "<setup cell>", "exec"), namespace)
    return shell.calls, namespace


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 5


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_opens_with_its_title(path):
    first = json.loads(path.read_text(encoding="utf8"))["cells"][0]
    assert first["cell_type"] == "markdown", (
        "the first cell must be the title (markdown), before the setup cell"
    )
    assert _source(first).lstrip().startswith("# "), (
        "the first cell must open with the chapter's '# Title'"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_first_code_cell_is_the_setup_cell(path):
    cell, source = _first_cell(path)
    assert source.startswith("# Setup: on Colab, install attnbook"), (
        "the first code cell must be the setup cell"
    )
    assert COLAB_TEST in source
    tags = cell.get("metadata", {}).get("tags", [])
    assert "hide-cell" in tags and "remove-cell" not in tags, tags
    assert not cell.get("outputs"), "notebooks are committed without outputs"
    installs = INSTALL.findall(source)
    assert len(installs) == 1, (
        f"expected exactly one %pip install of attnbook, found {installs}"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_setup_cell_installs_from_the_configured_repository(path):
    _, source = _first_cell(path)
    match = INSTALL.search(source)
    assert match, source
    assert match["url"].rstrip("/") == _repository_url(), (
        "install URL differs from repository.url in _config.yml"
    )
    # The release the book was built with, never a moving branch: the tag of
    # pyproject.toml's version.
    assert match["ref"] == f"v{_version()}", (
        f"the setup cell installs {match['ref'] or 'the default branch'}, not "
        f"v{_version()} (pyproject.toml): "
        "run book/_ext/notebook_setup.py"
    )
    extras = {e.strip() for e in match["extras"].split(",")}
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf8"))[
        "project"
    ]["optional-dependencies"]
    assert extras <= set(declared), (
        f"extras {extras - set(declared)} are not defined in pyproject.toml"
    )
    # The `book` extra is what every chapter needs (matplotlib, tqdm, the application
    # dependencies).
    assert "book" in extras or "all" in extras


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_setup_cell_is_a_no_op_outside_colab(path, monkeypatch):
    _, source = _first_cell(path)
    monkeypatch.delenv("COLAB_RELEASE_TAG", raising=False)
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    python = _as_python(source)
    modules_before = set(sys.modules)
    calls, namespace = _run_setup_cell(python)
    assert calls == [], f"the setup cell ran {calls} outside Colab"
    # Nothing but the two standard-library names the test needs is defined, and nothing
    # new is imported.
    assert set(namespace) - {"__builtins__", "get_ipython"} == {"os", "sys"}
    assert set(sys.modules) == modules_before


@pytest.mark.parametrize("how", ["env", "module"])
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_setup_cell_installs_once_on_colab(path, how, monkeypatch):
    _, source = _first_cell(path)
    # Colab sets COLAB_RELEASE_TAG in the kernel's environment and has google.colab
    # imported; either is enough.
    if how == "env":
        monkeypatch.setenv("COLAB_RELEASE_TAG", "release-colab-test")
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    else:
        monkeypatch.delenv("COLAB_RELEASE_TAG", raising=False)
        monkeypatch.setitem(sys.modules, "google.colab", type(sys)("google.colab"))
    calls, _ = _run_setup_cell(_as_python(source))
    assert len(calls) == 1, calls
    name, line = calls[0]
    assert name == "pip"
    assert (
        line.startswith("install ") and f"git+{_repository_url()}@v{_version()}" in line
    ), line


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_torch_notebooks_use_the_gpu_when_present(path):
    code = _code(path)
    uses_torch = (
        re.search(r"^\s*(import torch|from torch\b)", code, re.M)
        or "attnbook.torch" in code
    )
    if not uses_torch:
        pytest.skip("does not use PyTorch")
    assert "torch_device()" in code, (
        "put tensors on attnbook.devices.torch_device() so Colab's GPU is used"
    )
    # And nothing pins the CPU by hand where the device should be chosen.
    assert not re.search(r"""device\s*=\s*["']cpu["']""", code), (
        "a hard-coded device='cpu'"
    )


def test_notebook_setup_script_is_idempotent_and_was_run(tmp_path):
    """book/_ext/notebook_setup.py would change no notebook (it has been run), and
    running it twice changes nothing."""
    setup = _notebook_setup()
    assert setup.run(NOTEBOOKS, check=True) == [], (
        "run: .venv/bin/python book/_ext/notebook_setup.py"
    )
    # On a notebook in the old shape (setup cell first, a branch install), one run fixes
    # it and a second is a no-op.
    nb = json.loads(NOTEBOOKS[0].read_text(encoding="utf8"))
    title, setup_cell, *rest = nb["cells"]
    old = dict(
        setup_cell,
        source=[
            "# Setup: on Colab, install attnbook\n",
            '%pip install -q "attnbook[book] @ git+https://example.org/x"',
        ],
    )
    path = tmp_path / "old.ipynb"
    path.write_text(setup.dumps(dict(nb, cells=[old, title, *rest])), encoding="utf8")
    assert setup.run([path], root=ROOT) == [path]
    once = path.read_text(encoding="utf8")
    assert (
        setup.run([path], root=ROOT) == [] and path.read_text(encoding="utf8") == once
    )
    assert json.loads(once) == nb
    # A new chapter with only its title and text gets the setup cell, collapsed on the
    # page.
    path.write_text(setup.dumps(dict(nb, cells=[title, *rest])), encoding="utf8")
    assert setup.run([path], root=ROOT) == [path] and setup.run([path], root=ROOT) == []
    new = json.loads(path.read_text(encoding="utf8"))["cells"][1]
    assert _source(new) == _source(setup_cell) and new["metadata"] == {
        "tags": ["hide-cell"]
    }
