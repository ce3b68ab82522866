"""The documentation site's link check (docs/hooks/repo_files.py): links from the guides to
repository files work on the site, and a link to a file that does not exist fails the build."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("mkdocs")


def site(tmp_path: Path, page: str) -> subprocess.CompletedProcess:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.md").write_text("# Home\n\nSee [the guide](guide.md).\n")
    (tmp_path / "docs" / "guide.md").write_text(page)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "spec.md").write_text("# Spec\n\n## Wire format\n\nBack to [the guide](../docs/guide.md).\n")
    (tmp_path / "results.txt").write_text("42\n")
    (tmp_path / "mkdocs.yml").write_text(
        f"site_name: t\nstrict: true\nhooks: [{ROOT / 'docs' / 'hooks' / 'repo_files.py'}]\n"
        "not_in_nav: |\n  /repo/\nvalidation:\n  anchors: warn\n  unrecognized_links: warn\n"
        "nav: [index.md, guide.md, repo/CHANGELOG.md]\n")
    (tmp_path / "CHANGELOG.md").write_text("# Changes\n")
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"})


def test_links_to_repository_files_are_brought_into_the_site_and_rewritten(tmp_path):
    done = site(tmp_path, "# Guide\n\nThe [spec](../notes/spec.md#wire-format) and [raw figures](../results.txt).\n")
    assert done.returncode == 0, done.stderr
    html = (tmp_path / "site" / "guide" / "index.html").read_text()
    assert 'href="../repo/notes/spec/#wire-format"' in html and 'href="../repo/results.txt"' in html
    assert (tmp_path / "site" / "repo" / "results.txt").read_text() == "42\n"
    spec = (tmp_path / "site" / "repo" / "notes" / "spec" / "index.html").read_text()
    assert 'href="../../../guide/"' in spec  # the repository page's link back into docs/ works too


@pytest.mark.parametrize("page,complaint", [
    ("# Guide\n\n[gone](../notes/missing.md)\n", "notes/missing.md"),
    ("# Guide\n\n[wrong anchor](../notes/spec.md#no-such-section)\n", "no-such-section"),
    ("# Guide\n\n[gone](nowhere.md)\n", "nowhere.md"),
])
def test_a_broken_link_fails_the_build(tmp_path, page, complaint):
    done = site(tmp_path, page)
    assert done.returncode != 0 and complaint in done.stderr + done.stdout
