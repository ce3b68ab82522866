"""Every ```python block of docs/dp.md runs as pasted (in order, one session, as a reader would)."""

import re
from pathlib import Path

import pytest

pytest.importorskip("dp_accounting")

DOC = Path(__file__).resolve().parents[2] / "docs" / "dp.md"


def test_every_python_block_of_the_dp_docs_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 3
    namespace: dict = {}
    for number, block in enumerate(blocks):
        exec(compile(block, f"docs/dp.md, python block {number + 1}", "exec"), namespace)
    printed = capsys.readouterr().out
    assert "proven" in printed and "Zhu & Wang" in printed and "Theorem 9" in printed
    assert namespace["history"].epsilon[-1] <= 8.0
