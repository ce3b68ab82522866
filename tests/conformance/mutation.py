"""Mutation testing of the conformance suite: does it catch an implementation that skips a rule?

Every row of :data:`tests.conformance.mutants.MUTANTS` removes, weakens or inverts one rule of
secagg's own implementation (``secagg/protocol/``, and the two rejection-sampling rules of spec
section 7 in ``secagg/crypto/`` and ``secagg/protocol/graph.py``): it replaces one fragment of
one function's source, recompiles that function and patches it in, in this process. The whole
conformance suite (every test that drives the implementation through the adapter) then runs
against the mutant; the mutant is *killed* when a test fails, and *survives* when all pass.

    python -m tests.conformance.mutation             # run every mutant, print the table
    python -m tests.conformance.mutation --write     # ... and record it (results JSON + docs table)
    python -m tests.conformance.mutation --check     # ... and exit 1 if it differs from the record
    python -m tests.conformance.mutation C4 S10-1    # only these mutants (id or rule prefix)

Tests run killer-first (those naming the mutant's rule), so a killed mutant costs one or two tests
and only survivors run the whole suite; which test kills does not matter for the score. The test
that compares the protocol vectors with the generator's output is left out: it checks secagg
against its own vectors, which any change to secagg fails, and is skipped for other
implementations anyway.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import json
import os
import re
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest
from _pytest.runner import runtestprotocol

from tests.conformance.mutants import MUTANTS, Mutant

ROOT = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).with_name("mutation-results.json")
DOCS = ROOT / "docs" / "conformance.md"
TABLE_BEGIN = "<!-- mutation-table:begin (python -m tests.conformance.mutation --write) -->"
TABLE_END = "<!-- mutation-table:end -->"
LEFT_OUT = ("test_vector_files_match_what_the_code_generates", "test_mutation.py", "test_jsonl.py")
PER_TEST_SECONDS = 120


class MutantTimeout(BaseException):
    """A test ran longer than PER_TEST_SECONDS under a mutant (a hang is a failure too)."""


# ------------------------------------------------------------------------------ applying a mutant

def _resolve(target: str):
    module_name, _, qualname = target.partition(":")
    module = importlib.import_module(module_name)
    owner = module
    *path, name = qualname.split(".")
    for part in path:
        owner = getattr(owner, part)
    return module, owner, name


def mutated_function(mutant_id: str, target: str, edits: list[tuple[str, str]]):
    """(owner, name, original attribute, original function, mutated attribute); patches nothing.

    The fragments are matched against the function's source as it stands in its file (same
    indentation), then the edited source is dedented and compiled in the module's namespace.
    """
    module, owner, name = _resolve(target)
    original = inspect.getattr_static(owner, name)
    function = original.__func__ if isinstance(original, staticmethod) else original
    source = inspect.getsource(function)
    for find, replace in edits:
        found = source.count(find)
        if found != 1:
            raise LookupError(f"mutant {mutant_id}: the fragment occurs {found} times in {target}, not once:\n{find}")
        source = source.replace(find, replace)
    # A factory supplies the __class__ cell, so a method that calls super() still works.
    factory = ("def __mutant_factory(__class__):\n" + textwrap.indent(textwrap.dedent(source), "    ")
               + f"\n    return {name}\n")
    namespace: dict = {}
    exec(compile(factory, f"<mutant {mutant_id}>", "exec"), module.__dict__, namespace)  # noqa: S102
    new = namespace["__mutant_factory"](owner if inspect.isclass(owner) else None)
    if isinstance(original, staticmethod):
        new = staticmethod(new)
    return owner, name, original, function, new


def _by_target(mutant: Mutant) -> dict[str, list[tuple[str, str]]]:
    targets: dict[str, list[tuple[str, str]]] = {}
    for edit in mutant.edits:
        targets.setdefault(edit.target, []).append((edit.find, edit.replace))
    return targets


@contextlib.contextmanager
def applied(mutant: Mutant):
    """Patch every mutated function in; restore everything on exit.

    Besides the attribute itself, every other reference to the original function is patched:
    names imported into other secagg modules, and dispatch tables (a class attribute dict whose
    values are methods, like ClientSession._handlers).
    """
    patched = [mutated_function(mutant.id, target, edits) for target, edits in _by_target(mutant).items()]
    undo: list = []
    table_undo: list = []
    try:
        for owner, name, original, function, new in patched:
            new_function = new.__func__ if isinstance(new, staticmethod) else new
            undo.append((owner, name, original))
            setattr(owner, name, new)
            for module in [m for n, m in list(sys.modules.items()) if n == "secagg" or n.startswith("secagg.")]:
                for attr, value in list(vars(module).items()):
                    if value is function and module is not owner:
                        undo.append((module, attr, value))
                        setattr(module, attr, new_function)
            if inspect.isclass(owner):
                for value in vars(owner).values():
                    if isinstance(value, dict):
                        for key, entry in value.items():
                            if entry is function:
                                table_undo.append((value, key, entry))
                                value[key] = new_function
        yield
    finally:
        for table, key, entry in reversed(table_undo):
            table[key] = entry
        for target, attr, value in reversed(undo):
            setattr(target, attr, value)


# ------------------------------------------------------------------------------ running the suite

def _alarm(signum, frame):  # noqa: ARG001
    raise MutantTimeout(f"a test ran longer than {PER_TEST_SECONDS} s")


def _first_failure(items, log_timeouts: list) -> str | None:
    for item in items:
        signal.setitimer(signal.ITIMER_REAL, PER_TEST_SECONDS)
        try:
            reports = runtestprotocol(item, log=False, nextitem=None)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        if any(r.failed for r in reports):
            if any("MutantTimeout" in str(r.longrepr) for r in reports if r.failed):
                log_timeouts.append(item.nodeid)
            return item.nodeid
    return None


def _priority(item, mutant: Mutant) -> int:
    text = item.nodeid
    for rank, hint in enumerate(mutant.hints()):
        if re.search(hint, text):
            return rank
    return len(mutant.hints())


class _Runner:
    """A pytest plugin replacing the test loop: baseline first, then every mutant."""

    def __init__(self, mutants: list[Mutant], verbose: bool) -> None:
        self.mutants = mutants
        self.verbose = verbose
        self.results: dict[str, dict] = {}
        self.baseline_failures: list[str] = []
        self.items = 0
        self.seconds = 0.0

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session):
        items = [i for i in session.items if not any(name in i.nodeid for name in LEFT_OUT)]
        self.items = len(items)
        started = time.perf_counter()
        for item in items:
            reports = runtestprotocol(item, log=False, nextitem=None)
            if any(r.failed for r in reports):
                self.baseline_failures.append(item.nodeid)
        if self.baseline_failures:
            return True
        for mutant in self.mutants:
            order = sorted(items, key=lambda item, m=mutant: _priority(item, m))
            timeouts: list[str] = []
            began = time.perf_counter()
            with applied(mutant):
                killer = _first_failure(order, timeouts)
            self.results[mutant.id] = {"killed_by": killer, "timeout": bool(timeouts)}
            if self.verbose:
                verdict = f"killed by {killer}" if killer else "SURVIVED"
                print(f"{mutant.id:<28} {time.perf_counter() - began:6.2f} s  {verdict}", flush=True)
        self.seconds = time.perf_counter() - started
        return True


def run(mutants: list[Mutant], verbose: bool = False) -> _Runner:
    """Run ``mutants`` against the conformance suite in this process (in-process adapter only)."""
    os.environ["SECAGG_CONFORMANCE_HARNESS"] = "inprocess"
    os.environ.pop("SECAGG_IMPLEMENTATION", None)
    runner = _Runner(mutants, verbose)
    previous = signal.signal(signal.SIGALRM, _alarm)
    try:
        code = pytest.main([str(ROOT / "tests" / "conformance"), "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                            "--no-header", "-o", "addopts=", "-m", "not slow"], plugins=[runner])
    finally:
        signal.signal(signal.SIGALRM, previous)
    if code not in (0, 5) and not runner.results and not runner.baseline_failures:
        raise RuntimeError(f"pytest exited with {code} before running the mutants")
    return runner


# ------------------------------------------------------------------------------ the record

def score(results: dict[str, dict], kind: str | None = "refusal") -> tuple[int, int]:
    """(killed, total) over the mutants of ``kind`` (None: all)."""
    rows = [m for m in MUTANTS if kind is None or m.kind == kind]
    return sum(1 for m in rows if results[m.id]["killed_by"]), len(rows)


def record(results: dict[str, dict]) -> dict:
    killed, total = score(results)
    all_killed, all_total = score(results, None)
    return {
        "refusal_rule_mutants": {"killed": killed, "total": total},
        "all_mutants": {"killed": all_killed, "total": all_total},
        "mutants": {m.id: {"rule": m.rule, "kind": m.kind, "killed": bool(results[m.id]["killed_by"]),
                           "survivor_reason": m.survivor_reason} for m in MUTANTS},
    }


def docs_table(saved: dict) -> str:
    """The markdown recorded in docs/conformance.md between the mutation-table markers."""
    refusal, everything = saved["refusal_rule_mutants"], saved["all_mutants"]
    lines = [TABLE_BEGIN, "",
             f"Refusal-rule mutants killed: **{refusal['killed']} of {refusal['total']} "
             f"({100 * refusal['killed'] / refusal['total']:.1f}%)**; all mutants (refusal rules and the "
             f"behaviours of sections 5 and 7): {everything['killed']} of {everything['total']}.", ""]
    survivors = [(i, row) for i, row in saved["mutants"].items() if not row["killed"]]
    if survivors:
        lines += ["| surviving mutant | rule | why it survives |", "|---|---|---|"]
        lines += [f"| `{i}` | {row['rule']} | {row['survivor_reason']} |" for i, row in survivors]
    else:
        lines += ["No mutant survives."]
    lines += ["", "<details><summary>Every mutant</summary>", "", "| mutant | rule | kind | what it breaks | killed |",
              "|---|---|---|---|---|"]
    what = {m.id: m.what for m in MUTANTS}
    lines += [f"| `{i}` | {row['rule']} | {row['kind']} | {what[i]} | {'yes' if row['killed'] else '**no**'} |"
              for i, row in saved["mutants"].items()]
    lines += ["", "</details>", "", TABLE_END]
    return "\n".join(lines)


def write_docs(saved: dict) -> None:
    text = DOCS.read_text()
    start, end = text.index(TABLE_BEGIN), text.index(TABLE_END) + len(TABLE_END)
    DOCS.write_text(text[:start] + docs_table(saved) + text[end:])


def select(patterns: list[str]) -> list[Mutant]:
    if not patterns:
        return list(MUTANTS)
    return [m for m in MUTANTS if any(m.id == p or m.id.startswith(p + "-") or m.rule == p for p in patterns)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mutants", nargs="*", help="mutant ids or rule ids (default: all)")
    parser.add_argument("--write", action="store_true", help="record the results (JSON and docs/conformance.md)")
    parser.add_argument("--check", action="store_true", help="exit 1 unless the results equal the record")
    parser.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args(argv)
    chosen = select(args.mutants)
    if (args.write or args.check) and len(chosen) != len(MUTANTS):
        parser.error("--write and --check need every mutant")
    runner = run(chosen, verbose=not args.quiet)
    if runner.baseline_failures:
        print("the unmutated implementation fails:", *runner.baseline_failures, sep="\n  ")
        return 2
    survivors = [m for m in chosen if not runner.results[m.id]["killed_by"]]
    killed, total = (sum(1 for m in chosen if m.kind == "refusal" and runner.results[m.id]["killed_by"]),
                     sum(1 for m in chosen if m.kind == "refusal"))
    print(f"{runner.items} tests; {len(chosen)} mutants in {runner.seconds:.1f} s; refusal-rule mutants killed: "
          f"{killed}/{total}" + (f" ({100 * killed / total:.1f}%)" if total else ""))
    for m in survivors:
        print(f"  survivor {m.id} ({m.rule}): {m.what}" + (f" -- {m.survivor_reason}" if m.survivor_reason else ""))
    if args.write:
        saved = record(runner.results)
        RESULTS.write_text(json.dumps(saved, indent=1) + "\n")
        write_docs(saved)
    if args.check:
        saved = json.loads(RESULTS.read_text())
        fresh = record(runner.results)
        differing = [i for i in fresh["mutants"] if fresh["mutants"][i] != saved["mutants"].get(i)]
        differing += [i for i in saved["mutants"] if i not in fresh["mutants"]]
        if differing:
            print("DIFFERENT from the record:", ", ".join(differing))
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())


# ------------------------------------------------------------------------------ completeness

PROTOCOL_FILES = ("client.py", "server.py", "messages.py", "derivation.py", "graph.py")


def _edit_lines(mutant: Mutant) -> list[tuple[Path, int, int]]:
    """(file, first line, last line) of every fragment a mutant edits."""
    spans = []
    for edit in mutant.edits:
        _, owner, name = _resolve(edit.target)
        function = inspect.getattr_static(owner, name)
        function = getattr(function, "__func__", function)
        lines, start = inspect.getsourcelines(function)
        offset = "".join(lines).index(edit.find)
        first = start + "".join(lines)[:offset].count("\n")
        spans.append((Path(inspect.getsourcefile(function)).resolve(), first, first + edit.find.count("\n")))
    return spans


def raise_sites() -> list[dict]:
    """Every ``raise`` in secagg/protocol/, with the statement that guards it (its innermost
    enclosing if or try) and the mutants whose edits touch that guard (or the two lines above it,
    where the guard's condition is computed)."""
    import ast

    spans = [(m.id, *span) for m in MUTANTS for span in _edit_lines(m)]
    sites = []
    for name in PROTOCOL_FILES:
        path = (ROOT / "secagg" / "protocol" / name).resolve()
        source = path.read_text()
        tree = ast.parse(source)

        def visit(node, function, guard):
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    visit(child, child.name, None)
                elif isinstance(child, (ast.If, ast.Try)):
                    visit(child, function, child)
                elif isinstance(child, ast.Raise):
                    low = (guard.lineno if guard is not None else child.lineno) - 2
                    high = child.end_lineno
                    mutants = sorted({i for i, f, a, b in spans if f == path and a <= high and b >= low})
                    sites.append({"file": name, "function": function, "line": child.lineno,
                                  "text": " ".join(ast.get_source_segment(source, child).split())[:72],
                                  "mutants": mutants})
                else:
                    visit(child, function, guard)

        visit(tree, None, None)
    return sites
