"""The notebooks run top to bottom in a Jupyter kernel (nbclient), in a scratch folder, with
the small budgets ``AUTOPRUNE_QUICK=1`` selects; the committed ones carry the outputs of a real
run and no machine-specific paths."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

FOLDER = Path(__file__).parents[1] / "notebooks"
NOTEBOOKS = sorted(FOLDER.glob("*.ipynb"))
WITH_OUTPUTS = ["01_quickstart.ipynb", "02_your_own_model.ipynb"]
# a home, scratch or checkout folder, a virtualenv: what must never leak into a committed output
MACHINE_PATH = re.compile(r"/(home|root|tmp|work|Users)/|\.venv|site-packages")


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[n.name for n in NOTEBOOKS])
def test_notebook_runs(notebook: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("AUTOPRUNE_QUICK", "1")  # the kernel inherits it (and the test's cache)
    document = nbformat.read(notebook, as_version=4)
    client = nbclient.NotebookClient(
        document, timeout=900, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    )
    client.execute()  # a failing cell raises CellExecutionError with its traceback
    executed = [cell for cell in document.cells if cell.cell_type == "code"]
    assert executed and all(cell.execution_count for cell in executed)


def _outputs(cell: dict) -> str:
    texts = []
    for output in cell.get("outputs", []):
        texts.append("".join(output.get("text", "")))
        for kind, value in output.get("data", {}).items():
            if kind.startswith("text/"):
                texts.append("".join(value))
    return "\n".join(texts)


@pytest.mark.parametrize("name", WITH_OUTPUTS)
def test_committed_notebook_has_outputs_of_a_real_run(name: str) -> None:
    document = json.loads((FOLDER / name).read_text())
    cells = [cell for cell in document["cells"] if cell["cell_type"] == "code"]
    assert all(cell["execution_count"] for cell in cells), "run it before committing"
    assert not any(o["output_type"] == "error" for c in cells for o in c.get("outputs", []))
    text = "\n".join(_outputs(cell) for cell in cells)
    assert not MACHINE_PATH.search(text), MACHINE_PATH.search(text)
    if name == "01_quickstart.ipynb":
        assert "image/png" in json.dumps(cells)  # the front is drawn inline
    assert MACHINE_PATH.search("/home/me/x.db") and MACHINE_PATH.search("a/.venv/b")
