"""The documentation: the README fits a screen or two and keeps CI's test command, the reference
pages are what tools/gen_reference.py makes of the code today, and the mkdocs site builds with
--strict (every link's target exists: pages, results files, repository files)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TEST_COMMAND = ".venv/bin/python -m pytest tests"


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_is_short_and_runs_what_ci_runs():
    text = README.read_text()
    assert len(text.splitlines()) <= 150
    assert f"```bash\n{TEST_COMMAND}\n```" in text
    assert f"\n{TEST_COMMAND}\n" in (ROOT / ".ci" / "run").read_text()  # CI runs the README's command
    assert re.search(r"!\[[^\]]+\]\((docs/results/[^)]+\.png)\)", text)


def test_the_reference_pages_are_generated_from_the_code():
    stale = [str(p.relative_to(ROOT)) for p, text in load_tool("gen_reference").render().items()
             if not p.exists() or p.read_text() != text]
    assert not stale, f"regenerate them: python tools/gen_reference.py ({', '.join(stale)})"


def test_the_reference_pages_name_every_field_and_every_flag():
    from experiments.cli import config_flag
    from vgjax import config
    pages = load_tool("gen_reference").render()
    fields_page, commands_page = (pages[load_tool("gen_reference").PAGES[k]] for k in ("config", "commands"))
    for f in config.fields():
        assert f"| `{f.name}` |" in fields_page and (config_flag(f.name) or "") in fields_page
    for flag in ("--data-source", "--tensorboard", "--coordinator", "--theory-per-class", "--version"):
        assert flag in commands_page


def test_repository_links_become_source_urls_and_missing_ones_stay():
    hooks = load_tool("mkdocs_hooks")
    page = ROOT / "docs" / "guide" / "runs.md"
    text = hooks.rewrite("[b](../../benchmarks/epoch_speed.py) [r](../results.md) [d](../results/study/) "
                         "[m](../../benchmarks/nope.py) [u](https://example.org/x) [a](#here)", page)
    assert f"[b]({hooks.SOURCE}/blob/main/benchmarks/epoch_speed.py)" in text
    assert f"[d]({hooks.SOURCE}/tree/main/docs/results/study)" in text
    for kept in ("[r](../results.md)", "[m](../../benchmarks/nope.py)", "[u](https://example.org/x)", "[a](#here)"):
        assert kept in text


def mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"})


@pytest.fixture
def mkdocs():
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None:
        pytest.skip("mkdocs and mkdocs-material are not installed (pip install -e '.[dev]')")


def test_the_site_builds_strictly(mkdocs, tmp_path):
    proc = mkdocs_build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert proc.returncode == 0, proc.stderr[-3000:]
    site = tmp_path / "site"
    for page in ("index.html", "guide/runs/index.html", "reference/config/index.html", "results/index.html"):
        assert (site / page).exists(), page
    assert (site / "results" / "study" / "figures" / "compare_val_accuracy.png").exists()


def test_a_broken_link_fails_the_strict_build(mkdocs, tmp_path):
    import yaml
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# x\n\n[a page](missing.md) and [a figure](results/nope.png)\n")
    config.update(docs_dir=str(docs), nav=["index.md"], hooks=[str(ROOT / "tools" / "mkdocs_hooks.py")])
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(config))
    proc = mkdocs_build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert proc.returncode != 0 and "missing.md" in proc.stderr and "results/nope.png" in proc.stderr
