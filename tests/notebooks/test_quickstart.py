"""notebooks/quickstart.ipynb executed top to bottom in a real Jupyter kernel (nbclient), as a user
runs it: its own state folder, the small dataset built from Debian's Fashion-MNIST package."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tasks.core.settings import REPO_ROOT

pytestmark = [pytest.mark.flow, pytest.mark.slow]

NOTEBOOK = REPO_ROOT / "notebooks" / "quickstart.ipynb"


def test_quickstart_runs_top_to_bottom_and_shows_what_it_promises(
    fashion_source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [name for name in os.environ if name.startswith("PREFECT_")]:
        monkeypatch.delenv(name)  # the notebook's own embedded Prefect, not a test server's
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("FASHION_MNIST_SOURCE", str(fashion_source))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    ).execute()

    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    text = "".join(output.get("text", "") for output in outputs)
    assert "version 1, promoted: True" in text
    assert "fashion-cnn version 1 is in production" in text
    assert "true class" in text and "predicted" in text
    pictures = [output for output in outputs if "image/png" in output.get("data", {})]
    assert len(pictures) == 3  # training curves, confusion matrix, the Grad-CAM overlay
    tables = [
        output["data"]["text/html"] for output in outputs if "<table" in output.get("data", {}).get("text/html", "")
    ]
    assert len(tables) == 1 and "accuracy" in tables[0]  # the evaluation table
    assert any((tmp_path / "state" / "storage").rglob("SHA256SUMS"))
