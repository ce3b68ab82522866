import pytest
import subprocess
import sys

from secagg.cli import main


def test_simulate_prints_the_table_and_checks_the_sum(capsys):
    assert main(["simulate", "-n", "12", "-m", "50", "--dropout", "0.25"]) == 0
    out = capsys.readouterr().out
    for round_name in ("advertise_keys", "share_keys", "masked_input", "unmasking"):
        assert round_name in out
    assert "plaintext sum of the survivors' inputs: yes" in out


@pytest.mark.filterwarnings("ignore:SecAggConfig\\(unsafe_skip_bounds")
def test_simulate_sparse_malicious(capsys):
    # 30 clients are too few for a malicious-mode SecAgg+ graph: refused, naming the bound ...
    argv = ["simulate", "-n", "30", "-m", "10", "--neighbors", "8", "-t", "3", "--malicious", "--dropout", "0.1",
            "--bits", "64"]
    assert main(argv) == 2
    assert "2t - K corrupt holders" in capsys.readouterr().err
    # ... and still runnable for research
    assert main([*argv, "--unsafe"]) == 0
    out = capsys.readouterr().out
    assert "consistency_check" in out and "8 neighbours" in out and ": yes" in out


@pytest.mark.filterwarnings("ignore:SecAggConfig\\(unsafe_skip_bounds")
def test_simulate_reports_an_abort(capsys):
    # more dropouts than the threshold allows: the bounds refuse it unless --unsafe
    assert main(["simulate", "-n", "6", "-t", "5", "-m", "4", "--dropout", "0.2", "--drop-round", "masked_input"]) == 2
    assert "cannot be met" in capsys.readouterr().err
    assert main(["simulate", "-n", "6", "-t", "5", "-m", "4", "--dropout", "0.2", "--drop-round", "masked_input",
                 "--unsafe"]) == 2
    assert "ABORTED in round masked_input" in capsys.readouterr().out


def test_bad_parameters_give_a_clear_error(capsys):
    assert main(["simulate", "-n", "6", "-t", "9"]) == 2
    assert "threshold must be in 1..5" in capsys.readouterr().err


def test_console_script_entry_point():
    out = subprocess.run([sys.executable, "-m", "secagg.cli", "simulate", "-n", "5", "-m", "3", "--dropout", "0"],
                         capture_output=True, text=True, check=True).stdout
    assert "inputs in the aggregate: 5 of 5 clients" in out


def test_paillier_keygen_writes_loadable_key_files_and_refuses_unsafe_parameters(tmp_path, capsys):
    import pytest

    pytest.importorskip("gmpy2")
    from secagg.paillier.threshold import load_key_share, load_public_key

    assert main(["paillier-keygen", "-n", "4", "-t", "3", "--key-bits", "512", "--out", str(tmp_path)]) == 0
    assert "erase every share file" in capsys.readouterr().out
    public = load_public_key(tmp_path / "public.json", min_key_bits=512)
    assert (public.parties, public.threshold) == (4, 3)
    assert load_key_share(tmp_path / "share-2.json", public).index == 2
    assert main(["paillier-keygen", "-n", "6", "-t", "3", "--key-bits", "512", "--out", str(tmp_path / "x")]) == 2
    assert "2t > n + c" in capsys.readouterr().err


def test_insecure_with_certificates_is_refused_not_silently_dropped(capsys):
    assert main(["serve", "--task", "sum", "-n", "3", "-m", "4", "--insecure", "--ca", "ca.pem", "--cert", "c.pem",
                 "--key", "c.key"]) == 2
    err = capsys.readouterr().err
    assert "--insecure turns TLS off" in err and "--ca, --cert, --key" in err
    assert main(["join", "--task", "sum", "--id", "0", "-n", "3", "--random-vector", "1", "--insecure", "--ca",
                 "ca.pem"]) == 2
    assert "--insecure turns TLS off" in capsys.readouterr().err


def test_version_is_the_packages_one_line(capsys):
    import secagg
    from secagg._version import __version__

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"secagg {__version__}\n" and secagg.__version__ == __version__


@pytest.mark.parametrize("argv,hidden,extra", [
    (["demo", "--aggregator", "paillier", "--banks", "3", "--rounds", "1"], "phe", "paillier"),
    (["demo", "--aggregator", "paillier", "--banks", "3", "--rounds", "1"], "gmpy2", "paillier"),
    (["demo", "--dp-epsilon", "3", "--banks", "3", "--rounds", "1"], "dp_accounting", "dp"),
    (["paillier-keygen", "-n", "3", "-t", "2", "--key-bits", "512"], "gmpy2", "paillier"),
])
def test_a_missing_extra_is_one_line_naming_it_before_any_work(argv, hidden, extra, monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, hidden, None)  # `import <hidden>` now raises ImportError
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert f"pip install 'secagg[{extra}]'" in captured.err and captured.err.startswith("secagg: error: ")
    assert "round" not in captured.out  # refused before training anything
    assert list(tmp_path.iterdir()) == []


def test_an_import_error_of_a_package_no_extra_brings_is_not_hidden(monkeypatch):
    import secagg.cli as cli

    def broken(args):
        raise ImportError("No module named 'not_an_extra'", name="not_an_extra")

    monkeypatch.setattr(cli, "_cmd_simulate", broken)
    with pytest.raises(ImportError, match="not_an_extra"):
        main(["simulate"])


def test_a_raw_import_error_of_an_optional_package_is_mapped_to_its_extra():
    from secagg.cli import missing_extra_message

    assert missing_extra_message(ModuleNotFoundError("No module named 'grpc'", name="grpc")) == \
        "this command needs grpc, which is not installed: pip install 'secagg[net]'"
    assert missing_extra_message(ModuleNotFoundError("x", name="flwr.server")).endswith("'secagg[flower]'")


def test_paillier_keygen_checks_corrupt_banks_with_the_floor_banks_use_by_default(tmp_path, capsys):
    # docs/paillier.md's ceremony: 5 banks, t = 4, one corrupt bank; the banks' default floor is c + 2 = 3
    pytest.importorskip("gmpy2")
    assert main(["paillier-keygen", "--banks", "5", "--threshold", "4", "--corrupt", "1", "--key-bits", "512",
                 "--out", str(tmp_path)]) == 0
    assert "tolerates 1 corrupt banks" in capsys.readouterr().out
    assert main(["paillier-keygen", "--banks", "5", "--threshold", "4", "--corrupt", "1", "--min-contributors", "2",
                 "--key-bits", "512", "--out", str(tmp_path / "x")]) == 2
    assert "min_contributors >= c + 2" in capsys.readouterr().err
