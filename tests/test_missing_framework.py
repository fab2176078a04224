"""Without PyTorch or TensorFlow, the twins say what to install instead of a bare
``No module named 'torch'``.

Each case runs in a fresh interpreter in which the framework cannot be found: a
    finder placed first on
``sys.meta_path`` answers for the package and all its submodules as Python does on a
machine where it is not installed (``ModuleNotFoundError: No module named 'torch'``,
``err.name == "torch"``), so the test runs the same whether or not the framework is
installed here.
"""

import subprocess
import sys

import pytest

_CHECK = """
import sys

class NotInstalled:
    def find_spec(self, fullname, path=None, target=None):
        for name in {blocked!r}:
            if fullname == name or fullname.startswith(name + "."):
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, NotInstalled())
import attnbook                                   # NumPy only: still fine
try:
    {statement}
except ImportError as err:
    print(type(err).__name__, err.name, str(err), sep="|")
else:
    print("no error")
"""


def _run(blocked, statement):
    code = _CHECK.format(blocked=blocked, statement=statement)
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().split("|")


CASES = [
    (("torch",), "import attnbook.torch", "torch", 'pip install "attnbook[torch]"'),
    (("torch",), "attnbook.torch", "torch", 'pip install "attnbook[torch]"'),
    (
        ("torch",),
        "attnbook.softmax([1.0], backend='torch')",
        "torch",
        'pip install "attnbook[torch]"',
    ),
    (
        ("tensorflow",),
        "import attnbook.tensorflow",
        "tensorflow",
        'pip install "attnbook[tensorflow]"',
    ),
    (
        ("keras",),
        "import attnbook.tensorflow",
        "keras",
        'pip install "attnbook[tensorflow]"',
    ),
    (
        ("tensorflow", "keras"),
        "attnbook.tensorflow",
        "keras",
        'pip install "attnbook[tensorflow]"',
    ),
]


@pytest.mark.parametrize(
    ("blocked", "statement", "name", "advice"), CASES, ids=lambda v: str(v)
)
def test_missing_framework_names_the_extra(blocked, statement, name, advice):
    kind, err_name, message = _run(blocked, statement)
    assert (
        kind == "ModuleNotFoundError"
    )  # a subclass of ImportError: `except ImportError` still catches it
    assert err_name == name
    assert advice in message, message


def test_a_broken_install_is_not_disguised():
    """A framework that is installed but fails inside (here: one of its submodules is
    missing) keeps its own
    error: the advice to install the extra would not help."""
    pytest.importorskip("torch")
    kind, err_name, message = _run(("torch.nn.functional",), "import attnbook.torch")
    assert kind in ("ImportError", "ModuleNotFoundError") and err_name != "torch", (
        kind,
        err_name,
        message,
    )
    assert "attnbook[torch]" not in message
