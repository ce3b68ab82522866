"""Terminal output of the ``secagg`` commands: progress, tables and status lines.

With the ``demo`` extra (``rich``) a terminal gets a live progress bar that never wraps, tables
drawn by rich and a spinner for long set-up steps; without it, or when the output is not a
terminal (a pipe, a log file, a test), the same information comes as plain, aligned lines, one per
event. Nothing here changes what is computed: callers pass text, this module only lays it out.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any, Literal

__all__ = ["Column", "RoundProgress", "have_rich", "print_table", "status"]


def have_rich() -> bool:
    """Whether ``rich`` (the ``demo`` extra) can be imported."""
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


def _console(out: IO[str], **options: Any) -> Any:
    from rich.console import Console

    return Console(file=out, highlight=False, soft_wrap=False, **options)


@dataclass(frozen=True)
class Column:
    """One column of a table: its header and which side its cells align to."""

    header: str
    align: Literal["left", "right"] = "right"


def print_table(columns: Sequence[Column], rows: Sequence[Sequence[str] | None], out: IO[str] | None = None,
                *, title: str | None = None, use_rich: bool | None = None) -> None:
    """Print ``rows`` (already formatted cells; ``None`` starts a new section) under ``columns``.

    Every column is as wide as its widest cell or header, so any number of rows and labels of any
    length stay aligned.
    """
    out = out if out is not None else sys.stdout
    for row in rows:
        if row is not None and len(row) != len(columns):
            raise ValueError(f"a row has {len(row)} cells for {len(columns)} columns")
    if use_rich if use_rich is not None else have_rich():
        from rich import box
        from rich.table import Table

        table = Table(box=box.HORIZONTALS, title=title, title_justify="left", show_edge=False, pad_edge=False)
        for column in columns:
            table.add_column(column.header, justify=column.align)
        for row in rows:
            if row is None:
                table.add_section()
            else:
                table.add_row(*row)
        console = _console(out)
        if not console.is_terminal:  # a pipe or a file: as wide as the table, one line per row
            console = _console(out, width=max(80, _plain_width(columns, rows) + 2 * len(columns)))
        # on a narrow terminal rich folds a header or a label inside its own cell; columns stay aligned
        with console.capture() as captured:
            console.print(table)
        out.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))
        out.flush()
        return
    widths = [max([len(c.header)] + [len(row[i]) for row in rows if row is not None]) for i, c in enumerate(columns)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.ljust(w) if c.align == "left" else cell.rjust(w)
                         for cell, c, w in zip(cells, columns, widths)).rstrip()

    rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
    if title:
        print(title, file=out)
    print(line([c.header for c in columns]), file=out)
    print(rule, file=out)
    for row in rows:
        print(rule if row is None else line(row), file=out)


def _plain_width(columns: Sequence[Column], rows: Sequence[Sequence[str] | None]) -> int:
    return sum(max([len(c.header)] + [len(row[i]) for row in rows if row is not None])
               for i, c in enumerate(columns)) + 2 * len(columns)


class RoundProgress:
    """Progress over a fixed number of rounds, with one line of text per finished round.

    On a terminal with rich: the round lines scroll above a live bar (round, bar, elapsed and
    remaining time) that rich redraws in place and keeps within the terminal's width; a line too
    long for the terminal is cut with an ellipsis, never folded. Anywhere else (no rich, a pipe, a
    log file): the whole round lines only.
    Use as a context manager; ``advance(text)`` after each round.
    """

    def __init__(self, total: int, *, description: str = "round", enabled: bool = True,
                 out: IO[str] | None = None, use_rich: bool | None = None, console: Any = None) -> None:
        self.total, self.description, self.enabled = total, description, enabled
        self.out = out if out is not None else sys.stdout
        self.done = 0
        self._progress: Any = None
        self._task: Any = None
        self._console = console
        self._use_rich = (use_rich if use_rich is not None else have_rich()) and enabled

    def __enter__(self) -> RoundProgress:
        if self._use_rich:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
                TimeRemainingColumn

            console = self._console if self._console is not None else _console(self.out)
            if not console.is_terminal:  # a pipe or a log: whole lines, nothing redrawn or cut
                return self
            self._progress = Progress(TextColumn("{task.description}"), MofNCompleteColumn(),
                                      BarColumn(bar_width=None), TimeElapsedColumn(), TextColumn("eta"),
                                      TimeRemainingColumn(), console=console, transient=True, expand=False)
            self._progress.__enter__()
            self._task = self._progress.add_task(self.description, total=self.total)
        return self

    def advance(self, text: str) -> None:
        """One round finished: print its line and move the bar."""
        if not self.enabled:
            return
        self.done += 1
        line = f"{self.description} {self.done:>{len(str(self.total))}}/{self.total}  {text}"
        if self._progress is not None:
            self._progress.console.print(line, overflow="ellipsis", no_wrap=True, crop=True, markup=False)
            self._progress.advance(self._task)
        else:
            print(line, file=self.out, flush=True)

    def __exit__(self, *exc_info: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc_info)
            self._progress = None


@contextlib.contextmanager
def status(message: str, out: IO[str] | None = None, *, enabled: bool = True,
           use_rich: bool | None = None) -> Iterator[None]:
    """Say that a long step started, keep a spinner turning on a terminal (rich), say how long it took."""
    out = out if out is not None else sys.stdout
    if not enabled:
        yield
        return
    started = time.perf_counter()
    console = _console(out) if (use_rich if use_rich is not None else have_rich()) else None
    if console is not None and console.is_terminal:
        with console.status(message):
            yield
    else:
        print(f"{message} ...", file=out, flush=True)
        yield
    print(f"{message}: done in {time.perf_counter() - started:.1f} s", file=out, flush=True)
