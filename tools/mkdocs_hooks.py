"""mkdocs hook: a page's link to a file of the repository outside docs/ (a benchmark, a test, the
notebook), or to a folder (docs/results/study/), becomes a link to it in the source repository
([project.urls] Source), so the pages read the same on GitHub and on the site. A link whose
target exists nowhere is left as it is, and mkdocs --strict reports it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SOURCE = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Source"]
LINK = re.compile(r"(\]\()([^)\s]+)(\))")


def repository_url(target: str, page_file: Path) -> str | None:
    """The source-repository URL of ``target`` (relative to ``page_file``) when it names a file or
    folder of the repository outside docs/; else None."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path or target.startswith("#"):
        return None
    path = (page_file.parent / parts.path).resolve()
    if not path.exists() or not path.is_relative_to(ROOT) or (path.is_relative_to(DOCS) and not path.is_dir()):
        return None  # a page or file of the site (mkdocs checks it), or nothing: mkdocs reports it
    kind = "tree" if path.is_dir() else "blob"
    anchor = f"#{parts.fragment}" if parts.fragment else ""
    return f"{SOURCE}/{kind}/main/{path.relative_to(ROOT).as_posix()}{anchor}"


def rewrite(markdown: str, page_file: Path) -> str:
    def replace(m: re.Match) -> str:
        url = repository_url(m.group(2), page_file)
        return m.group(0) if url is None else f"{m.group(1)}{url}{m.group(3)}"

    return LINK.sub(replace, markdown)


def on_page_markdown(markdown, page, config, files):  # mkdocs' hook
    return rewrite(markdown, Path(page.file.abs_src_path))
