"""Every code block of README.md and docs/ runs as pasted.

Each fenced block says its language: ``python`` blocks run as a script, ``sh`` blocks in bash
(``-e``: the first failing command fails the block), ``text`` blocks (program output, file trees)
are not run. Each block runs on its own, in a fresh copy of the repository whose ``.venv`` is the
environment running this test, so what a reader pastes from a clone is what runs, and nothing it
writes (certificates, keys, state directories) lands in the working tree.

A comment on the line before a block changes that:

* ``<!-- docs-test: slow -->``: the block takes minutes, or starts servers on the fixed default
  port 50051 (which another process on the machine may hold): it runs with ``pytest -m slow``;
* ``<!-- docs-test: skip: <reason> -->``: never run, for the few blocks running them would harm
  (``make test`` itself, installing into the environment the suite runs in); the reason is required;
* ``<!-- docs-test: continues -->``: the next step of the block before it on the page (a file the
  first one wrote, say): the two run in order in the same copy, as one test named after the first.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LANGUAGES = {"python", "sh", "text"}
FENCE = re.compile(r"^(```+|~~~+)\s*([\w+-]*)\s*$")
MARKER = re.compile(r"^<!--\s*docs-test:\s*(slow|continues|skip:\s*(?P<reason>.+?))\s*-->$")
# copying the repository leaves these out: environments, caches, build output
NOT_COPIED = shutil.ignore_patterns(".venv", ".git", "build", "dist", "site", "__pycache__", ".mypy_cache",
                                    ".pytest_cache", ".hypothesis", ".benchmarks", "local", "*.egg-info")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    language: str
    code: str
    marker: str | None  # "slow", "skip: reason" or None

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks_of(page: Path) -> list[Block]:
    lines = page.read_text(encoding="utf-8").splitlines()
    found, i = [], 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, language = opening.groups()
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == fence), None)
        if end is None:
            raise AssertionError(f"{page.relative_to(ROOT)}:{i + 1}: a code block is never closed")
        previous = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        marker = MARKER.match(previous)
        found.append(Block(page, i + 1, language, "\n".join(lines[i + 1:end]) + "\n",
                           marker.group(1) if marker else None))
        i = end + 1
    return found


BLOCKS = [block for page in PAGES for block in blocks_of(page)]
RUNNABLE = [block for block in BLOCKS if block.language != "text"]


def test_every_block_says_its_language():
    unknown = [f"{b.name} ({b.language or 'no language'})" for b in BLOCKS if b.language not in LANGUAGES]
    assert not unknown, f"blocks need one of {sorted(LANGUAGES)} after the fence: {unknown}"


def test_the_collector_finds_the_blocks():
    assert len(RUNNABLE) >= 15 and {b.page.name for b in RUNNABLE} >= {"README.md", "fedavg.md", "dp.md",
                                                                        "paillier.md", "flower.md", "network.md"}


def test_markers_are_well_formed():
    for page in PAGES:
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            if "docs-test" in line:
                assert MARKER.match(line.strip()), f"{page.relative_to(ROOT)}:{number}: {line.strip()!r}"


def steps() -> list[list[Block]]:
    """The runnable blocks, each with the blocks that continue it."""
    groups: list[list[Block]] = []
    for block in RUNNABLE:
        if block.marker == "continues":
            assert groups and groups[-1][0].page == block.page, f"{block.name} continues no block of its page"
            groups[-1].append(block)
        else:
            groups.append([block])
    return groups


def _parameters():
    for group in steps():
        markers = {block.marker for block in group}
        marks = [pytest.mark.slow] if "slow" in markers else []
        marks += [pytest.mark.skip(reason=m) for m in markers if m and m.startswith("skip")]
        if any(re.search(r"^\s*(import|from) torch\b", b.code, re.M) for b in group) and \
                importlib.util.find_spec("torch") is None:  # make test installs its CPU build where reachable
            marks.append(pytest.mark.skip(reason="torch is not installed"))
        yield pytest.param(group, id=group[0].name, marks=marks)


@pytest.fixture
def clone(tmp_path):
    """A copy of the repository whose .venv is this test's environment."""
    copy = tmp_path / "secagg"
    shutil.copytree(ROOT, copy, ignore=NOT_COPIED, symlinks=True)  # copy2 keeps mtimes: make sees a fresh stamp
    (copy / ".venv").symlink_to(sys.prefix, target_is_directory=True)
    return copy


@pytest.mark.parametrize("group", list(_parameters()))
def test_block_runs_as_pasted(group, clone):
    environment = dict(os.environ, PYTHONUNBUFFERED="1", MPLBACKEND="Agg")
    environment.pop("PYTHONPATH", None)  # as a reader's shell: secagg comes from the environment, not the tree
    timeout = 1800 if any(block.marker == "slow" for block in group) else 300
    for block in group:
        if block.language == "python":
            script = clone / "docs_block.py"
            script.write_text(block.code)
            command = [sys.executable, str(script)]
        else:
            command = ["bash", "-e", "-o", "pipefail", "-c", block.code]
        done = subprocess.run(command, cwd=clone, env=environment, capture_output=True, text=True, timeout=timeout)
        report = (f"{block.name} exited with {done.returncode}\n--- block\n{block.code}"
                  f"--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}")
        assert done.returncode == 0, report
        # `cmd &` ... `wait` returns 0 whatever the background commands did: their complaints are the signal
        assert "Traceback (most recent call last)" not in done.stderr and "secagg: error:" not in done.stderr, report
