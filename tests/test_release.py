"""Publishing: the GitHub Actions workflows, the release check and the packaging
metadata they rely on.

The wheel itself is built and installed in a clean virtual environment by
``.ci/release-check`` (run by CI and by the release workflow; ``make release-check``
locally), which takes ~30 s and so is not part of the unit tests. These tests check,
in milliseconds, that everything it and the workflows depend on is in place.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import pytest
import yaml

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"


def _workflow(name):
    # PyYAML reads the key `on:` as the boolean True (YAML 1.1); GitHub reads it as
    # "on".
    data = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf8"))
    data["on"] = data.pop(True, data.get("on"))
    return data


def _steps(job):
    return job.get("steps", [])


def _uses(job):
    return [s["uses"].split("@")[0] for s in _steps(job) if "uses" in s]


def _runs(job):
    return "\n".join(s.get("run", "") for s in _steps(job))


@pytest.mark.parametrize("name", ["ci.yml", "book.yml", "release.yml"])
def test_workflow_is_valid_yaml_with_jobs(name):
    wf = _workflow(name)
    assert wf["name"] and wf["on"] and wf["jobs"]
    for job_name, job in wf["jobs"].items():
        assert "runs-on" in job, job_name
        assert _steps(job), job_name
        for step in _steps(job):
            assert ("uses" in step) != ("run" in step), step
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w./-]+@[\w./-]+", step["uses"]), step[
                    "uses"
                ]


def test_ci_workflow_runs_the_ci_script():
    wf = _workflow("ci.yml")
    assert "pull_request" in wf["on"] and "push" in wf["on"]
    (job,) = wf["jobs"].values()
    assert "bash .ci/run" in _runs(job)


def test_book_workflow_caches_execution_and_deploys_pages():
    wf = _workflow("book.yml")
    build, deploy = wf["jobs"]["build"], wf["jobs"]["deploy"]
    assert wf["permissions"] == {
        "contents": "read",
        "pages": "write",
        "id-token": "write",
    }
    cache = next(
        s for s in _steps(build) if s.get("uses", "").startswith("actions/cache@")
    )
    # Jupyter Book's default cache location (execute.cache is not set in _config.yml).
    assert cache["with"]["path"] == "_build/.jupyter_cache"
    assert "book/**/*.ipynb" in cache["with"]["key"]
    assert "make book" in _runs(build)
    upload = next(
        s
        for s in _steps(build)
        if s.get("uses", "").startswith("actions/upload-pages-artifact@")
    )
    assert upload["with"]["path"] == "_build/html"
    assert deploy["needs"] == "build" and "actions/deploy-pages" in _uses(deploy)
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf8"))
    assert not config["execute"].get("cache"), (
        "the workflow caches the default _build/.jupyter_cache"
    )


def test_release_workflow_checks_then_publishes_with_trusted_publishing():
    wf = _workflow("release.yml")
    assert wf["on"] == {"push": {"tags": ["v*"]}}
    build, publish = wf["jobs"]["build"], wf["jobs"]["publish"]
    assert ".ci/release-check" in _runs(build)
    assert publish["needs"] == "build"
    assert publish["permissions"] == {"id-token": "write"}, (
        "trusted publishing needs id-token, nothing else"
    )
    assert "pypa/gh-action-pypi-publish" in _uses(publish)
    publish_step = next(
        s for s in _steps(publish) if "pypi-publish" in s.get("uses", "")
    )
    assert "password" not in publish_step.get("with", {}), (
        "no API token: trusted publishing"
    )


def test_release_check_script_does_what_the_readme_says():
    script = (ROOT / ".ci" / "release-check").read_text(encoding="utf8")
    for needle in (
        "-m build",
        "twine check --strict",
        "-m venv",
        "import attnbook",
        '"torch", "tensorflow"',
    ):
        assert needle in script, needle
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf8")
    # Book before tests (the browser test reuses the site), and the release check in CI.
    assert ci.index("make book") < ci.index("make test") < ci.index(".ci/release-check")
    assert "apt-get install" in ci and "chromium" in ci


def test_package_data_globs_cover_every_data_file():
    """Every file under attnbook/data (including subdirectories such as data/bench/)
    matches a package-data glob."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf8"))
    globs = pyproject["tool"]["setuptools"]["package-data"]["attnbook"]
    assert any("**" in g for g in globs), (
        "subdirectories of data/ need a recursive glob"
    )
    files = [
        p.relative_to(ROOT / "attnbook").as_posix()
        for p in (ROOT / "attnbook" / "data").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    ]

    def matches(path, pattern):
        # setuptools' recursive glob: `**/` matches zero or more directories.
        return fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(
            path, pattern.replace("**/", "")
        )

    unmatched = [f for f in files if not any(matches(f, g) for g in globs)]
    assert not unmatched, unmatched
    assert matches("data/bench/sdpa.json", "data/**/*")


def test_book_extra_bundles_mathjax():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf8"))
    assert (
        "sphinx-mathjax-offline"
        in pyproject["project"]["optional-dependencies"]["book"]
    )
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf8"))
    assert "sphinx-mathjax-offline" in config["sphinx"]["extra_extensions"]
    constraints = (ROOT / "requirements" / "constraints.txt").read_text(encoding="utf8")
    assert re.search(r"^sphinx-mathjax-offline==", constraints, re.M)
