"""The dealerless key ceremony with real processes (issue 18): one relay and five bank processes
over mutual TLS; one bank crashes mid-ceremony and is started again, the relay restarts the
ceremony, and the key the banks wrote then sums a Paillier round over the network exactly as a
dealer's key does. 512-bit key: INSECURE, for CI speed only (--insecure-test-key)."""

import numpy as np
import pytest

pytest.importorskip("grpc")
pytest.importorskip("gmpy2")

from secagg.paillier.threshold import load_key_share, load_public_key  # noqa: E402
from secagg.transport.certs import make_dev_pki  # noqa: E402

from .test_network_processes import free_port, logs, spawn, wait_all  # noqa: E402, F401
from .test_paillier_processes import _join, _serve  # noqa: E402

BANKS, T = 5, 3


def _relay(pki, port, out):
    return ["-m", "secagg", "paillier-keygen", "--no-dealer", "--serve", "-n", str(BANKS), "-t", str(T),
            "--key-bits", "512", "--insecure-test-key",
            "--verify-keys", str(pki / "verify_keys.json"), "--address", f"127.0.0.1:{port}",
            "--cert", str(pki / "coordinator.pem"), "--key", str(pki / "coordinator.key"), "--ca", str(pki / "ca.pem"),
            "--round-deadline", "60", "--join-deadline", "90", "--out", str(out)]


def _bank(pki, port, bank, out, *extra):
    return ["-m", "secagg", "paillier-keygen", "--no-dealer", "--bank", str(bank), "-n", str(BANKS), "-t", str(T),
            "--key-bits", "512", "--insecure-test-key",
            "--coordinator", f"localhost:{port}", "--identity", str(pki / f"identity-{bank}.key"),
            "--verify-keys", str(pki / "verify_keys.json"), "--ca", str(pki / "ca.pem"),
            "--cert", str(pki / f"client-{bank}.pem"), "--key", str(pki / f"client-{bank}.key"), "--out", str(out),
            *extra]


def test_five_bank_processes_generate_a_key_through_a_crash_and_it_sums_a_round(tmp_path, logs):
    pki = tmp_path / "pki"
    make_dev_pki(pki, BANKS)
    port = free_port()
    relay = spawn(*_relay(pki, port, tmp_path / "relay"), log=logs("relay"))
    banks = [spawn(*_bank(pki, port, b, tmp_path / f"bank{b}", *(["--fault-exit-at-round", "3"] if b == 2 else [])),
                   log=logs(f"bank{b}")) for b in range(BANKS)]
    assert banks[2].wait(120) == 17  # the crash
    restarted = spawn(*_bank(pki, port, 2, tmp_path / "bank2"), log=logs("bank2-restarted"))
    codes = wait_all([relay, restarted, *(banks[:2] + banks[3:])], timeout=240)
    assert codes == [0] * (BANKS + 1)
    public = load_public_key(tmp_path / "relay" / "public.json", min_key_bits=512)
    assert public.decryption_scale != 1 and public.parties == BANKS and public.threshold == T
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "public.json").write_text((tmp_path / "relay" / "public.json").read_text())
    for b in range(BANKS):  # each bank wrote the same public key and its own share only
        assert load_public_key(tmp_path / f"bank{b}" / "public.json", min_key_bits=512) == public
        assert sorted(p.name for p in (tmp_path / f"bank{b}").iterdir()) == ["public.json", f"share-{b + 1}.json"]
        load_key_share(tmp_path / f"bank{b}" / f"share-{b + 1}.json", public)
        (keys / f"share-{b + 1}.json").write_text((tmp_path / f"bank{b}" / f"share-{b + 1}.json").read_text())

    # the key drives one Paillier round over the network (serve --aggregator paillier, five banks)
    m = 2_000
    rng = np.random.default_rng(5)
    vectors = [rng.integers(-2**31 + 1, 2**31, size=m, dtype=np.int64) for _ in range(BANKS)]
    for i, v in enumerate(vectors):
        np.save(tmp_path / f"v{i}.npy", v)
    port = free_port()
    out = tmp_path / "sum"
    coordinator = spawn(*_serve(tmp_path, port, out, "--task", "sum", "-m", str(m)), log=logs("coordinator"))
    joins = [spawn("-m", "secagg", *_join(tmp_path, port, b), "--task", "sum", "--vector", str(tmp_path / f"v{b}.npy"),
                   log=logs(f"join{b}")) for b in range(BANKS)]
    assert wait_all([coordinator, *joins]) == [0] * (BANKS + 1)
    assert np.array_equal(np.load(out.with_suffix(".npy")), sum(vectors))  # exact, as under a dealer's key
