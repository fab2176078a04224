"""Every notebook opens on Colab ready to run, and runs unchanged everywhere else.

Each ``book/*.ipynb`` (new chapters included: the list is a glob) must begin with the setup cell that, on Colab only,
``%pip install``s attnbook with its extras from the repository named in ``_config.yml``. The cell is executed here the
way IPython would run it (magics transformed, ``get_ipython`` faked): outside Colab it must do nothing at all, and on
Colab exactly one ``pip install`` of that URL. Notebooks that use PyTorch must put their tensors on
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
INSTALL = re.compile(r'^\s*%pip install -q "attnbook\[(?P<extras>[\w,\s-]+)\] @ git\+(?P<url>[^"]+)"\s*$', re.M)
COLAB_TEST = 'if "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ:'


def _repository_url():
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf8"))
    return config["repository"]["url"].rstrip("/")


def _first_cell(path):
    nb = json.loads(path.read_text(encoding="utf8"))
    cell = nb["cells"][0]
    source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
    return cell, source


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
    """The cell as IPython runs it: magics transformed into ``get_ipython().run_line_magic(...)`` calls."""
    from IPython.core.inputtransformer2 import TransformerManager

    python = TransformerManager().transform_cell(source)
    assert "%pip" not in python  # the magic really was transformed
    return python


def _run_setup_cell(python):
    """Execute the transformed cell with a fake ``get_ipython``; return the magics it ran and its namespace."""
    shell = _FakeIPython()
    namespace = {"get_ipython": lambda: shell}
    exec(compile(python, "<setup cell>", "exec"), namespace)
    return shell.calls, namespace


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 5


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_begins_with_the_setup_cell(path):
    cell, source = _first_cell(path)
    assert cell["cell_type"] == "code", "the first cell must be the setup code cell"
    assert source.startswith("# Setup: on Colab, install attnbook"), source
    assert COLAB_TEST in source
    tags = cell.get("metadata", {}).get("tags", [])
    assert "hide-cell" in tags and "remove-cell" not in tags, tags
    assert not cell.get("outputs"), "notebooks are committed without outputs"
    installs = INSTALL.findall(source)
    assert len(installs) == 1, f"expected exactly one %pip install of attnbook, found {installs}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_setup_cell_installs_from_the_configured_repository(path):
    _, source = _first_cell(path)
    match = INSTALL.search(source)
    assert match, source
    assert match["url"].rstrip("/") == _repository_url(), "install URL differs from repository.url in _config.yml"
    extras = {e.strip() for e in match["extras"].split(",")}
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf8"))["project"]["optional-dependencies"]
    assert extras <= set(declared), f"extras {extras - set(declared)} are not defined in pyproject.toml"
    # The `book` extra is what every chapter needs (matplotlib, tqdm, the application dependencies).
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
    # Nothing but the two standard-library names the test needs is defined, and nothing new is imported.
    assert set(namespace) - {"__builtins__", "get_ipython"} == {"os", "sys"}
    assert set(sys.modules) == modules_before


@pytest.mark.parametrize("how", ["env", "module"])
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_setup_cell_installs_once_on_colab(path, how, monkeypatch):
    _, source = _first_cell(path)
    # Colab sets COLAB_RELEASE_TAG in the kernel's environment and has google.colab imported; either is enough.
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
    assert line.startswith("install ") and f"git+{_repository_url()}" in line, line


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_torch_notebooks_use_the_gpu_when_present(path):
    code = _code(path)
    uses_torch = re.search(r"^\s*(import torch|from torch\b)", code, re.M) or "attnbook.torch" in code
    if not uses_torch:
        pytest.skip("does not use PyTorch")
    assert "torch_device()" in code, "put tensors on attnbook.devices.torch_device() so Colab's GPU is used"
    # And nothing pins the CPU by hand where the device should be chosen.
    assert not re.search(r"""device\s*=\s*["']cpu["']""", code), "a hard-coded device='cpu'"
