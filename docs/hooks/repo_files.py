"""MkDocs hook: the guides' links to files outside docs/ (the protocol spec, examples, benchmark
results, the changelog) work on the site, and each one is checked.

The guides link to repository files the way GitHub renders them (``../protocols/secagg-v2.md``).
MkDocs only knows files under ``docs/``, so this hook follows every such link (and the links of the
repository pages it brings in, transitively), adds the target to the site under ``repo/``
(Markdown as a page, anything else as a file to download) and rewrites the link to it. A link to a
repository path that does not exist fails the build with the page and the link named; links inside
``docs/`` are left to MkDocs' own validation (``validation:`` in mkdocs.yml), and ``--strict``
turns its warnings into errors too.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

# inline links and images: [text](target "title") / ![alt](target)
LINK = re.compile(r"(!?\[[^\]]*\]\()([^)\s]+)((?:\s+\"[^\"]*\")?\))")
FENCE = re.compile(r"^ {0,3}(```|~~~)")
PREFIX = "repo"  # repository files live under this folder of the site
EXTRA_PAGES = ["CHANGELOG.md"]  # repository pages the navigation names directly


def _outside_code(markdown: str):
    """(is_code, chunk) pieces of ``markdown``: fenced blocks are left alone."""
    chunk: list[str] = []
    fenced = False
    for line in markdown.splitlines(keepends=True):
        if FENCE.match(line):
            if not fenced:
                yield False, "".join(chunk)
                chunk = [line]
            else:
                chunk.append(line)
                yield True, "".join(chunk)
                chunk = []
            fenced = not fenced
            continue
        chunk.append(line)
    yield fenced, "".join(chunk)


def _targets(markdown: str):
    for is_code, chunk in _outside_code(markdown):
        if not is_code:
            for match in LINK.finditer(chunk):
                yield match.group(2)


def _local(target: str) -> tuple[str, str] | None:
    """(path, '#anchor' or '') of a link to a file, or None for URLs and same-page anchors."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith(("#", "/")):
        return None
    path, _, anchor = target.partition("#")
    return path, f"#{anchor}" if anchor else ""


class _Repository:
    def __init__(self, config: Any) -> None:
        self.docs_dir = Path(config["docs_dir"]).resolve()
        self.root = self.docs_dir.parent
        self.docs_prefix = self.docs_dir.relative_to(self.root).as_posix()
        self.config = config

    def site_path(self, page_uri: str, target: str) -> str | None:
        """The site-relative path a link of page ``page_uri`` goes to, or None if it stays in docs/.

        ``page_uri`` is the page's path on the site (``paillier.md``, ``repo/examples/x/README.md``).
        """
        on_site = posixpath.normpath(posixpath.join(posixpath.dirname(page_uri), target))
        if on_site.startswith(PREFIX + "/"):  # a repository page linking by its own relative path
            repo_path = on_site[len(PREFIX) + 1:]
        elif on_site == ".." or on_site.startswith("../"):
            repo_path = posixpath.normpath(posixpath.join(self.docs_prefix, on_site))
        else:
            return None
        if repo_path.startswith("../"):
            raise PluginError(f"{page_uri}: link {target!r} leaves the repository")
        if (self.root / repo_path).is_dir() and (self.root / repo_path / "README.md").is_file():
            repo_path = f"{repo_path}/README.md"  # a folder, as GitHub shows it: its README
        if repo_path == self.docs_prefix or repo_path.startswith(self.docs_prefix + "/"):
            return posixpath.relpath(repo_path, self.docs_prefix)  # back into docs/
        return f"{PREFIX}/{repo_path}"


def on_files(files: Files, config: Any) -> Files:
    repo = _Repository(config)
    queue = [(f.src_uri, Path(f.abs_src_path).read_text(encoding="utf-8")) for f in files.documentation_pages()]
    for name in EXTRA_PAGES:
        queue.append((f"{PREFIX}/{name}", ""))
    added: set[str] = set()
    while queue:
        page_uri, markdown = queue.pop()
        wanted = [page_uri] if page_uri.startswith(PREFIX + "/") and page_uri not in added else []
        for target in _targets(markdown):
            local = _local(target)
            if local is None or not local[0]:
                continue
            site = repo.site_path(page_uri, local[0])
            if site is not None and site.startswith(PREFIX + "/"):
                wanted.append(site)
        for site in wanted:
            if site in added:
                continue
            source = repo.root / site[len(PREFIX) + 1:]
            if not source.is_file():
                raise PluginError(f"{page_uri}: link to {site[len(PREFIX) + 1:]!r}, which is not a file of the "
                                  "repository")
            added.add(site)
            files.append(File.generated(config, site, abs_src_path=str(source)))
            if source.suffix == ".md":
                queue.append((site, source.read_text(encoding="utf-8")))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    repo = _Repository(config)

    def rewrite(match: re.Match[str]) -> str:
        local = _local(match.group(2))
        if local is None or not local[0]:
            return match.group(0)
        site = repo.site_path(page.file.src_uri, local[0])
        if site is None:
            return match.group(0)
        relative = posixpath.relpath(site, posixpath.dirname(page.file.src_uri) or ".")
        return f"{match.group(1)}{relative}{local[1]}{match.group(3)}"

    return "".join(chunk if is_code else LINK.sub(rewrite, chunk) for is_code, chunk in _outside_code(markdown))
