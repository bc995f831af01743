"""docs/results.md: every number it quotes is in a generated file, every file it links exists, and
the committed reports are what experiments.report makes of the committed run files today."""

import re
import shutil
from pathlib import Path

import pytest

from experiments import report, sweep_report

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGE = DOCS / "results.md"
RESULTS = DOCS / "results"
# "0.879 ± 0.004" -- a measured mean ± std as the generated tables write it
MEAN_STD = re.compile(r"\d+\.\d+ ± \d+\.\d+")
LINK = re.compile(r"\]\(([^)#\s]+)")


def generated_text() -> str:
    return "\n".join(p.read_text() for p in sorted(RESULTS.rglob("report.md")))


def test_every_mean_and_std_on_the_page_is_in_a_generated_report():
    page, generated = PAGE.read_text(), generated_text()
    quoted = MEAN_STD.findall(page)
    assert len(quoted) >= 10, "the page should quote the multi-seed results"
    missing = sorted({q for q in quoted if q not in generated})
    assert not missing, f"numbers on docs/results.md that no generated report holds: {missing}"


def test_every_link_on_the_page_and_in_the_readme_resolves():
    for doc in (PAGE, ROOT / "README.md"):
        for target in LINK.findall(doc.read_text()):
            if "://" in target:
                continue
            assert (doc.parent / target).exists(), f"{doc.name} links to a missing file: {target}"


@pytest.mark.parametrize("sweep", sorted(p.parent.name for p in RESULTS.glob("*/summary.json")))
def test_committed_sweep_reports_regenerate_from_their_summary(sweep, tmp_path):
    src = RESULTS / sweep
    dst = tmp_path / sweep
    shutil.copytree(src, dst)
    (dst / "report.md").unlink()
    sweep_report.write_sweep_report(dst, figures=False)
    old = (src / "report.md").read_text().replace(str(src.relative_to(ROOT)), "DIR")
    new = (dst / "report.md").read_text().replace(str(dst), "DIR")
    assert new == old


def test_committed_study_report_regenerates_from_its_run_files(tmp_path):
    src = RESULTS / "study"
    dst = tmp_path / "study"
    shutil.copytree(src, dst)
    report.write_report(dst, figures=False)
    strip = lambda text, d: "\n".join(l for l in text.replace(str(d), "DIR").splitlines()  # noqa: E731
                                      if not l.startswith("![") and l != "## Figures")
    assert strip((dst / "report.md").read_text(), dst) == strip((src / "report.md").read_text(),
                                                                src.relative_to(ROOT))
