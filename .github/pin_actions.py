"""Pin every GitHub Action of .github/workflows/*.yml to the commit its tag or branch
names today.

    # rewrite `uses: owner/repo@v4` as `uses: owner/repo@<sha> # v4`
    python .github/pin_actions.py
    # list the actions not pinned yet; exit 1 if there are any
    python .github/pin_actions.py --check

A tag can be moved to other code after the fact; a commit hash cannot. This needs
network access (it asks GitHub with ``git ls-remote``), so run it on a machine that
has it, review the diff, and commit it. To update later, put the tag back
(``owner/repo@v5``) and run it again; Dependabot's "github-actions" ecosystem also
keeps hashes current.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

WORKFLOWS = Path(__file__).resolve().parent / "workflows"
USES = re.compile(
    r"^(?P<head>\s*(?:-\s*)?uses:\s*)(?P<action>[\w.-]+/[\w./-]+)@(?P<ref>[\w./-]+)(?P<tail>.*)$"
)
SHA = re.compile(r"^[0-9a-f]{40}$")


def unpinned(text):
    """``(action, ref)`` of every ``uses:`` line whose ref is not a commit hash."""
    found = []
    for line in text.splitlines():
        m = USES.match(line)
        if m and not SHA.match(m["ref"]):
            found.append((m["action"], m["ref"]))
    return found


def resolve(action, ref):
    """The commit that ``ref`` (a tag or a branch) of ``action``'s repository points
    to, peeled for annotated tags."""
    owner, repo = action.split("/")[:2]
    out = subprocess.run(
        [
            "git",
            "ls-remote",
            f"https://github.com/{owner}/{repo}",
            f"refs/tags/{ref}",
            f"refs/tags/{ref}^{{}}",
            f"refs/heads/{ref}",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    refs = dict(reversed(line.split("\t")) for line in out.stdout.splitlines())
    for name in (f"refs/tags/{ref}^{{}}", f"refs/tags/{ref}", f"refs/heads/{ref}"):
        if name in refs:
            return refs[name]
    raise LookupError(f"{action}@{ref}: no such tag or branch")


def pin(text):
    lines = []
    for line in text.splitlines(keepends=True):
        m = USES.match(line.rstrip("\n"))
        if m and not SHA.match(m["ref"]):
            sha = resolve(m["action"], m["ref"])
            line = f"{m['head']}{m['action']}@{sha} # {m['ref']}\n"
        lines.append(line)
    return "".join(lines)


def main(argv):
    check = "--check" in argv
    todo = 0
    for path in sorted(WORKFLOWS.glob("*.yml")):
        text = path.read_text(encoding="utf8")
        for action, ref in unpinned(text):
            todo += 1
            print(f"{path.name}: {action}@{ref} is not pinned to a commit")
        if not check and unpinned(text):
            path.write_text(pin(text), encoding="utf8")
    return 1 if check and todo else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
