"""Terminal output: rich where installed (the `demo` extra), plain aligned lines without it; a
progress bar that stays within an 80-column terminal; tables aligned whatever the labels."""

import io
import re
import sys

import pytest

from secagg import display
from secagg.cli import main
from secagg.display import Column, RoundProgress, print_table

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
BANKS = ["bank-0 (urban retail)", "bank-1 (rural savings)", "bank-2 (online neobank)", "bank-3 (premium travel)",
         "bank-4 (students)"]


def screen_lines(raw: str) -> list[str]:
    """What a terminal shows, line by line: ANSI codes removed, carriage returns start over."""
    return [ANSI.sub("", part) for line in raw.split("\n") for part in line.split("\r")]


def rows_for(names):
    rows = [[f"{name} alone", f"{0.5 + i / 100:.3f}", f"{i / 50:.3f}"] for i, name in enumerate(names)]
    return rows + [None, ["mean of banks alone", "0.700", "0.100"], ["pooled (centralised)", "0.964", "0.481"]]


COLUMNS = [Column("model (evaluated on all banks' test data)", "left"), Column("ROC-AUC"), Column("avg prec")]


@pytest.mark.parametrize("use_rich", [False, pytest.param(True, marks=pytest.mark.skipif(
    not display.have_rich(), reason="rich not installed"))])
@pytest.mark.parametrize("banks", [1, 4, 5])
def test_tables_are_aligned_for_any_number_of_banks(use_rich, banks):
    out = io.StringIO()
    print_table(COLUMNS, rows_for(BANKS[:banks]), out, use_rich=use_rich)
    lines = [line for line in out.getvalue().splitlines() if re.search(r"\d\.\d{3}", line)]
    assert len(lines) == banks + 2
    # every number of a column ends in the same place as the column's header
    header = next(line for line in out.getvalue().splitlines() if "ROC-AUC" in line)
    for line in lines:
        first, second = re.findall(r"\d\.\d{3}", line)
        assert line.index(first) + 5 == header.index("ROC-AUC") + len("ROC-AUC")
        assert line.rstrip().endswith(second) and len(line.rstrip()) == len(header.rstrip())


def test_a_row_with_the_wrong_number_of_cells_is_refused():
    with pytest.raises(ValueError, match="2 cells for 3 columns"):
        print_table(COLUMNS, [["a", "b"]], io.StringIO(), use_rich=False)


@pytest.mark.skipif(not display.have_rich(), reason="rich not installed")
def test_the_progress_bar_never_wraps_in_an_80_column_terminal():
    from rich.console import Console

    raw = io.StringIO()
    console = Console(file=raw, force_terminal=True, width=80, color_system="standard")
    long_text = "AUC 0.912  AP 0.301  in sum 7/8  dropped: " + ", ".join(BANKS)  # far beyond 80 columns
    with RoundProgress(30, console=console, use_rich=True) as progress:
        for _ in range(30):
            progress.advance(long_text)
    shown = screen_lines(raw.getvalue())
    assert max(len(line) for line in shown) <= 80
    assert sum("round" in line and "/30" in line for line in shown) >= 30  # every round said, the bar drawn
    assert any("━" in line for line in shown)
    assert any(line.startswith("round 30/30") and line.endswith("…") for line in shown)  # cut, not folded


def test_without_rich_progress_is_one_plain_line_per_round(monkeypatch):
    monkeypatch.setitem(sys.modules, "rich", None)
    assert not display.have_rich()
    out = io.StringIO()
    with RoundProgress(3, out=out) as progress:
        for i in range(3):
            progress.advance(f"AUC 0.{i}")
    assert out.getvalue().splitlines() == ["round 1/3  AUC 0.0", "round 2/3  AUC 0.1", "round 3/3  AUC 0.2"]


def test_the_demo_runs_and_prints_an_aligned_table_without_rich(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "rich", None)
    assert main(["demo", "--banks", "4", "--samples", "1500", "--rounds", "2", "--aggregator", "plain"]) == 0
    out = capsys.readouterr().out
    assert "round 2/2  AUC" in out and "\r" not in out
    table = [line for line in out.splitlines() if re.search(r"\d\.\d{3} +\d\.\d{3}$", line)]
    assert len(table) == 4 + 3  # four banks, their mean, federated, pooled
    assert len({len(line) for line in table}) == 1


def test_a_status_line_says_when_a_long_step_ends(monkeypatch):
    monkeypatch.setitem(sys.modules, "rich", None)
    out = io.StringIO()
    with display.status("generating a key", out):
        pass
    first, second = out.getvalue().splitlines()
    assert first == "generating a key ..." and re.fullmatch(r"generating a key: done in \d+\.\d s", second)


@pytest.mark.skipif(not display.have_rich(), reason="rich not installed")
def test_a_pipe_gets_whole_lines_not_a_bar_nor_cut_lines():
    out = io.StringIO()  # not a terminal
    long_text = "ABORTED: " + "x" * 150
    with RoundProgress(2, out=out, use_rich=True) as progress:
        progress.advance(long_text)
        progress.advance("AUC 0.9")
    assert out.getvalue().splitlines() == [f"round 1/2  {long_text}", "round 2/2  AUC 0.9"]
