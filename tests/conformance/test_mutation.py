"""The suite's own bookkeeping: every spec rule has vectors and mutants, every refusal in
secagg/protocol/ is mutated (or excluded with a reason), and the mutation score stays as recorded.

These check secagg and its vectors, so they are skipped when the suite runs over another
implementation.
"""

import json
import os
import re
import subprocess
import sys

import pytest

from tests.conformance.conftest import ROOT, load, transcripts
from tests.conformance.mutants import MUTANTS, NOT_MUTATED

pytestmark = pytest.mark.skipif(bool(os.environ.get("SECAGG_IMPLEMENTATION") or
                                     os.environ.get("SECAGG_HARNESS_COMMAND")),
                                reason="checks secagg's own implementation and vectors")

SPEC = ROOT / "protocols" / "secagg-v2.md"
RULE = re.compile(r"\*\*([MGRCS]\d+)\b")
BAR = 0.95


def spec_rules() -> set[str]:
    return set(RULE.findall(SPEC.read_text()))


def vector_rules() -> set[str]:
    refusals = load("refusals.json")
    rules = {c["rule"] for c in refusals["client"] + refusals["server"]}
    rules |= {c["rule"] for c in load("codec.json")["invalid"]}
    for path in transcripts():
        rules |= set(json.loads(path.read_text())["rules"])
    if load("holders.json")["cases"]:
        rules.add("G1")
    if any("rejections" in c for c in load("shamir.json")["cases"]):
        rules.add("G2")
    # C0 and S0 (a refusal changes nothing) are checked after every client and server case
    rules |= {"C0"} if refusals["client"] else set()
    rules |= {"S0"} if refusals["server"] else set()
    return rules


def test_the_spec_states_each_rule_once_and_numbers_them_without_gaps():
    found = RULE.findall(SPEC.read_text())
    assert sorted(r for r in set(found) if found.count(r) > 1) == [], "a rule stated (in bold) twice"
    families: dict[str, set[int]] = {}
    for rule in found:
        families.setdefault(rule[0], set()).add(int(rule[1:]))
    for family, numbers in families.items():
        first = 0 if family in "CS" else 1  # C0 and S0: a refusal changes nothing
        assert numbers == set(range(first, max(numbers) + 1)), f"{family} rules are not numbered {first}..n"


def test_every_spec_rule_has_a_vector_and_every_vector_a_rule():
    rules, vectors = spec_rules(), vector_rules()
    assert rules - vectors == set(), "rules without a vector"
    assert vectors - rules == set(), "vectors naming rules the spec does not have"


def test_every_spec_rule_has_a_mutant_and_every_mutant_a_rule():
    rules, mutated = spec_rules(), {m.rule for m in MUTANTS}
    assert rules - mutated == set(), "rules no mutant breaks"
    assert mutated - rules == set(), "mutants of rules the spec does not have"


def test_every_raise_in_the_protocol_is_mutated_or_excluded_with_a_reason():
    from tests.conformance.mutation import raise_sites

    used = set()
    missing = []
    for site in raise_sites():
        if site["mutants"]:
            continue
        match = [i for i, (file, function, prefix, _) in enumerate(NOT_MUTATED)
                 if file == site["file"] and function == site["function"] and site["text"].startswith(prefix)]
        if not match:
            missing.append(f"{site['file']}:{site['line']} {site['function']}: {site['text']}")
        used.update(match)
    assert not missing, "raise statements with neither a mutant nor a reason:\n" + "\n".join(missing)
    stale = [NOT_MUTATED[i][:3] for i in range(len(NOT_MUTATED)) if i not in used]
    assert not stale, f"exclusions that match no raise: {stale}"


def test_tests_reach_the_implementation_only_through_the_adapter():
    # so that another implementation is judged by the same tests, not by secagg's codec
    for path in sorted((ROOT / "tests" / "conformance").glob("test_*.py")):
        text = path.read_text()
        assert not re.search(r"^\s*(from|import) secagg\b", text, re.M), f"{path.name} imports secagg"


def test_every_mutant_applies_to_the_current_code():
    from tests.conformance.mutation import _by_target, mutated_function

    for mutant in MUTANTS:
        for target, edits in _by_target(mutant).items():
            mutated_function(mutant.id, target, edits)  # raises if a fragment no longer occurs exactly once


def test_mutation_score_is_as_recorded_and_above_the_bar():
    # Every mutant against the whole suite (in process), about a minute: the run must give exactly
    # the recorded verdicts, so a change that lets a mutant survive fails here.
    done = subprocess.run([sys.executable, "-m", "tests.conformance.mutation", "--check", "-q"], cwd=ROOT,
                          capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    from tests.conformance.mutation import RESULTS, docs_table

    saved = json.loads(RESULTS.read_text())
    refusal = saved["refusal_rule_mutants"]
    assert refusal["killed"] >= BAR * refusal["total"]
    rows = saved["mutants"]
    assert set(rows) == {m.id for m in MUTANTS}
    for mutant in MUTANTS:
        assert rows[mutant.id]["killed"] or mutant.survivor_reason, f"{mutant.id} survives without a reason"
        if mutant.issue15:
            assert rows[mutant.id]["killed"], f"issue 15's broken implementation {mutant.id} passes the suite"
        if mutant.kind == "behaviour":
            assert rows[mutant.id]["killed"], f"behaviour mutant {mutant.id} passes the suite"
    assert docs_table(saved) in (ROOT / "docs" / "conformance.md").read_text(), \
        "docs/conformance.md's table is stale: python -m tests.conformance.mutation --write"
