"""The committed notebooks follow the house rules: kernel python3, one `parameters` cell of literal
assignments each with a comment, outputs stripped except the nbval reference cells, no sys.path tricks."""

import ast

import nbformat
import pytest

from pxr.runner import params

NOTEBOOKS = sorted((params.repo_root() / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_house_rules(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged `parameters`"
    for line in tagged[0].source.splitlines():
        if not line.strip():
            continue
        statement = ast.parse(line).body[0]
        assert isinstance(statement, ast.Assign), f"not an assignment: {line}"
        ast.literal_eval(statement.value)  # literal values only: computed ones ignore papermill's injection
        assert "#" in line, f"parameter without a comment: {line}"
    for cell in code:
        assert "sys.path" not in cell.source
        # Checks live in the cells as asserts (nbval fails on them), never in stored outputs.
        assert not cell.outputs and cell.execution_count is None, "strip outputs with `make strip`"


def test_every_notebook_has_params_for_the_smoke_run():
    for path in NOTEBOOKS:
        assert "smoke" in params.run_names(path.stem), f"params/{path.stem}/smoke.yaml is missing"
