"""The Colab notebook: outputs stripped in the repository, and it runs top to bottom on CPU."""

import os
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "vanishing_gradients.ipynb"


def test_outputs_are_stripped():
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


def test_readme_links_the_notebook_with_a_colab_badge():
    readme = (NOTEBOOK.parents[1] / "README.md").read_text()
    assert "colab.research.google.com/github/" in readme and "notebooks/vanishing_gradients.ipynb" in readme


@pytest.mark.slow
def test_notebook_runs_end_to_end_on_the_smallest_budget(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("VGJAX_NOTEBOOK_BUDGET", "smoke")
    monkeypatch.setenv("VGJAX_NOTEBOOK_OUT", str(tmp_path / "out"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError on any cell error
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "baseline_7" in text and "init std" in text
    assert (tmp_path / "out" / "comparison").is_dir()
    assert (tmp_path / "out" / "freeze" / "summary.json").exists()
