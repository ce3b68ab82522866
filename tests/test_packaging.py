"""What a packager or an adopter gets: the sdist and wheel carry the licence, the version from its
one place, the typing marker and the extras; the sdist carries tests, docs and the protocol spec;
the wheel installed alone in a fresh environment runs the commands that need no extra."""

from __future__ import annotations

import email
import re
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

from secagg._version import __version__

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    pytest.importorskip("build")
    out = tmp_path_factory.mktemp("dist")
    # --no-isolation: the test extra brings setuptools and build, so no download is needed here
    subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--sdist", "--wheel", "--outdir", str(out),
                    str(ROOT)], check=True, capture_output=True, text=True, timeout=300)
    wheel, = out.glob("secagg-*.whl")
    sdist, = out.glob("secagg-*.tar.gz")
    return wheel, sdist


def wheel_metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return email.message_from_bytes(archive.read(name))


def test_the_wheel_says_its_licence_version_pythons_and_extras(dists):
    wheel, _ = dists
    meta = wheel_metadata(wheel)
    assert meta["Name"] == "secagg" and meta["Version"] == __version__
    assert meta["License-Expression"] == "Apache-2.0" and meta.get_all("License-File") == ["LICENSE"]
    classifiers = meta.get_all("Classifier")
    assert {f"Programming Language :: Python :: 3.{minor}" for minor in (10, 11, 12, 13)} <= set(classifiers)
    assert "Typing :: Typed" in classifiers and meta["Requires-Python"] == ">=3.10"
    extras = set(meta.get_all("Provides-Extra"))
    assert {"demo", "paillier", "net", "dp", "flower", "flower-sim", "sklearn", "torch", "docs", "test"} <= extras
    requires = meta.get_all("Requires-Dist")
    flower = [r for r in requires if r.endswith("extra == \"flower\"")]
    assert flower and all("simulation" not in r for r in flower)  # deployments without Ray
    assert any("flwr[simulation]" in r and "flower-sim" in r for r in requires)
    core = [r for r in requires if "extra ==" not in r]
    assert sorted(re.split(r"[<>=\[ ;]", r)[0] for r in core) == ["cryptography", "galois", "numpy"]


def test_the_wheel_carries_the_typing_marker_and_the_licence_not_the_tests(dists):
    wheel, _ = dists
    names = zipfile.ZipFile(wheel).namelist()
    assert "secagg/py.typed" in names and "secagg/_version.py" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert not any(n.startswith(("tests/", "docs/", "benchmarks/")) for n in names)


def test_the_sdist_carries_tests_docs_and_the_protocol(dists):
    _, sdist = dists
    with tarfile.open(sdist) as archive:
        names = {n.split("/", 1)[1] for n in archive.getnames() if "/" in n}
    for wanted in ("LICENSE", "CHANGELOG.md", "README.md", "Makefile", "mkdocs.yml", "tests/conftest.py",
                   "tests/conformance/test_vectors.py", "docs/fedavg.md", "docs/api/protocol.md",
                   "docs/hooks/repo_files.py", "protocols/secagg-v2.md", "protocols/generate_vectors.py",
                   "protocols/vectors/codec.json", "examples/bank_antifraud.py", "secagg/py.typed"):
        assert wanted in names, wanted
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)


def test_the_changelog_has_a_section_for_this_version():
    text = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(rf"^## {re.escape(__version__)}\b", text, re.MULTILINE), f"CHANGELOG.md has no ## {__version__}"


@pytest.mark.slow
def test_the_wheel_alone_in_a_fresh_environment_runs_version_demo_and_simulate(dists, tmp_path):
    """The issue's bar: no extras, from PyPI only the core's dependencies (a minute or two to install)."""
    wheel, _ = dists
    venv.create(tmp_path / "env", with_pip=True)
    bin_dir = tmp_path / "env" / "bin"
    subprocess.run([bin_dir / "python", "-m", "pip", "install", "--quiet", str(wheel)], check=True, timeout=900)
    run = dict(capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert subprocess.run([bin_dir / "secagg", "--version"], **run).stdout == f"secagg {__version__}\n"
    demo = subprocess.run([bin_dir / "secagg", "demo", "--banks", "4", "--rounds", "3", "--samples", "1500"], **run)
    assert demo.returncode == 0 and "round 3/3" in demo.stdout and "federated (masking)" in demo.stdout, demo.stderr
    simulate = subprocess.run([bin_dir / "secagg", "simulate", "-n", "10", "-m", "1000"], **run)
    assert simulate.returncode == 0 and "plaintext sum of the survivors' inputs: yes" in simulate.stdout
    missing = subprocess.run([bin_dir / "secagg", "demo", "--aggregator", "paillier"], **run)
    assert missing.returncode == 2 and missing.stdout.count("round") == 0
    assert missing.stderr.strip().count("\n") == 0 and "pip install 'secagg[paillier]'" in missing.stderr
