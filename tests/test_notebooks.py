"""The teaching notebooks run top to bottom, in a fresh kernel, without an error or a warning.

Each notebook is executed with nbclient in the ``python3`` kernel (ipykernel provides its
kernelspec inside the virtual environment), in a temporary working directory, with the
headless Agg backend for matplotlib. Agg draws nothing until asked, so one extra cell draws
every figure the notebook made: a label that matplotlib cannot typeset fails here, as it
would in Jupyter. The notebooks are stored without outputs.
"""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
EXPECTED = {
    "01_softmax_and_stability.ipynb",
    "02_backprop_and_gradient_checking.ipynb",
    "03_optimizers_compared.ipynb",
    "04_regularization_and_early_stopping.ipynb",
    "05_first_model_linear_regression.ipynb",
    "06_digits_train_save_serve.ipynb",
    "07_convolutions_from_scratch.ipynb",
    "08_batch_normalization.ipynb",
    "09_hyperparameter_tuning.ipynb",
}
DRAW_EVERY_FIGURE = """\
import matplotlib.pyplot as plt
for number in plt.get_fignums():
    plt.figure(number).canvas.draw()
"""


def _code_cells(notebook: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def test_every_teaching_notebook_is_present() -> None:
    assert {path.name for path in NOTEBOOKS} == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_is_stored_without_outputs_for_the_python3_kernel(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    assert notebook.metadata.kernelspec.name == "python3"
    for index, cell in enumerate(_code_cells(notebook)):
        assert cell.outputs == [], f"code cell {index} has stored outputs"
        assert cell.execution_count is None, f"code cell {index} has an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_runs_top_to_bottom_without_errors_or_warnings(
        path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the kernel inherits this process's environment: no display needed for the plots
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(path, as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell(DRAW_EVERY_FIGURE))
    client = NotebookClient(notebook, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError on the first failing cell

    # Python warnings reach the notebook as stderr text; progress bars use stderr too
    for index, cell in enumerate(_code_cells(notebook)):
        for output in cell.outputs:
            if output.output_type == "stream" and output.name == "stderr":
                assert "Warning" not in output.text, (
                    f"code cell {index} of {path.name} printed a warning:\n{output.text}")
