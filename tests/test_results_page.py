"""docs/results.md: every number it quotes is in a generated file, every file it links exists, and
the committed reports are what experiments.report makes of the committed run files today."""

import importlib.util
import re
import shutil
from pathlib import Path

import pytest

from vgjax import data
from vgjax.analysis import escape
from vgjax.report import runs as report, sweep as sweep_report

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


@pytest.mark.parametrize("name", sorted(p.parent.name for p in RESULTS.glob("*/report.md")))
def test_committed_reports_regenerate_from_their_files(name, tmp_path, request):
    """Each report is what experiments.report makes today of the files committed beside it (the
    benchmarks' and the escape study's: what their own commands make)."""
    src, dst = RESULTS / name, tmp_path / name
    shutil.copytree(src, dst)
    (dst / "report.md").unlink()
    if name in ("keras_parity", "seeds_gpu", "seeds_full"):  # benchmarks/keras_parity.py's (metrics.json), protocol_time.py's
        script = {"keras_parity": "keras_parity.py", "seeds_gpu": "protocol_time.py", "seeds_full": "protocol_time.py"}[name]
        spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / script)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.regenerate(dst)
    elif name == "course":  # experiments.course report (from figures.csv and original_table.csv)
        from experiments import course
        course.main(["report", "--out", str(dst)])
    elif name == "escape":  # experiments.escape report, whose theory part reads the data
        arrays = data.load(request.getfixturevalue("fashion_mnist_dir"))
        escape.write_escape_report(dst / "sweep", dst, arrays)
    elif name == "trainability":  # experiments.trainability report (one sweep per activation)
        from vgjax.analysis import trainability

        dirs = [dst / a for a in trainability.GRID if (dst / a / "summary.json").is_file()]
        trainability.write_report(dirs, dst, f"python -m experiments.trainability report {dst} --out {dst}")
    else:  # through the command line, as docs/results.md says: the committed manifest lets it write
        from experiments import report as report_cli
        assert report_cli.main([str(dst)]) == 0
    new = (dst / "report.md").read_text().replace(str(dst), "DIR")
    assert new == (src / "report.md").read_text().replace(str(src.relative_to(ROOT)), "DIR")


def test_the_study_covers_every_method_of_spec_3_to_5():
    from vgjax.methods import method_names

    wanted = set(method_names("baseline") + method_names("remedy") + method_names("staged")
                 + method_names("optimizers"))
    rows = report.collect(RESULTS / "study")
    assert {r.method for r in rows} == wanted
    assert all(r.status == "finished" and r.epochs_run == r.epochs_planned for r in rows)
