"""The Paillier path over the network with real processes: `secagg serve --aggregator paillier`
and one `secagg join --paillier-share ...` process per bank, under mutual TLS."""

import json
import signal

import numpy as np
import pytest

pytest.importorskip("grpc")
pytest.importorskip("gmpy2")

from secagg.fedavg.data import make_bank_transactions  # noqa: E402
from secagg.paillier import generate_threshold_keypair  # noqa: E402
from secagg.paillier.threshold import safe_prime, save_key_material  # noqa: E402
from secagg.transport.certs import make_dev_pki  # noqa: E402

from .test_network_processes import free_port, logs, spawn, wait_all  # noqa: E402, F401

BANKS, T = 5, 3  # 2t > n + c holds for c = 0; every bank's floor is c + 2 = 2


@pytest.fixture(scope="module")
def material(tmp_path_factory):
    """A dev PKI (TLS certificates and the banks' Ed25519 identities) and a 512-bit toy key."""
    root = tmp_path_factory.mktemp("paillier-net")
    make_dev_pki(root / "pki", BANKS)
    p = safe_prime(256)
    q = safe_prime(256)
    while q == p:
        q = safe_prime(256)
    public, shares = generate_threshold_keypair(BANKS, T, primes=(p, q))
    save_key_material(root / "keys", public, shares)
    return root


def _serve(root, port, out, *extra):
    pki, keys = root / "pki", root / "keys"
    return ["-m", "secagg", "serve", "--aggregator", "paillier", "--paillier-public", str(keys / "public.json"),
            "--verify-keys", str(pki / "verify_keys.json"), "--min-key-bits", "512", "-n", str(BANKS),
            "--address", f"127.0.0.1:{port}", "--cert", str(pki / "coordinator.pem"),
            "--key", str(pki / "coordinator.key"), "--ca", str(pki / "ca.pem"), "--join-deadline", "60",
            "--deadline", "30", "--linger", "3", "--output", str(out), *extra]


def _join(root, port, bank):
    pki, keys = root / "pki", root / "keys"
    return ["join", "--coordinator", f"localhost:{port}", "--id", str(bank), "-n", str(BANKS),
            "--paillier-share", str(keys / f"share-{bank + 1}.json"), "--paillier-public", str(keys / "public.json"),
            "--min-key-bits", "512", "--identity", str(pki / f"identity-{bank}.key"),
            "--verify-keys", str(pki / "verify_keys.json"), "--ca", str(pki / "ca.pem"),
            "--cert", str(pki / f"client-{bank}.pem"), "--key", str(pki / f"client-{bank}.key"),
            "--give-up-after", "30"]


def test_a_killed_bank_and_a_cheating_bank_leave_an_exact_sum_and_the_cheater_named(material, tmp_path, logs):
    m = 3_000
    rng = np.random.default_rng(11)
    vectors = [rng.integers(-2**31 + 1, 2**31, size=m, dtype=np.int64) for _ in range(BANKS)]
    for i, v in enumerate(vectors):
        np.save(tmp_path / f"v{i}.npy", v)
    port = free_port()
    out = tmp_path / "sum"
    coordinator = spawn(*_serve(material, port, out, "--task", "sum", "-m", str(m)), log=logs("coordinator"))
    banks = {}
    for i in (0, 1, 2):
        banks[i] = spawn("-m", "secagg", *_join(material, port, i), "--task", "sum",
                         "--vector", str(tmp_path / f"v{i}.npy"), log=logs(f"bank{i}"))
    # bank 3 sends a wrong partial decryption; bank 4 contributes, then dies when asked to decrypt
    banks[3] = spawn("-m", "secagg.transport.faults", "--wrong-partials", "--", *_join(material, port, 3), "--task",
                     "sum", "--vector", str(tmp_path / "v3.npy"), log=logs("bank3"))
    banks[4] = spawn("-m", "secagg.transport.faults", "--bank-die-at", "decryption", "--", *_join(material, port, 4),
                     "--task", "sum", "--vector", str(tmp_path / "v4.npy"), log=logs("bank4"))
    codes = wait_all([coordinator, *banks.values()])
    assert codes[0] == 0
    assert dict(zip(banks, codes[1:])) == {0: 0, 1: 0, 2: 0, 3: 0, 4: -signal.SIGKILL}
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["aborted"] is None
    assert summary["survivors"] == [0, 1, 2, 3, 4]  # bank 4's contribution is in; its partial never came
    assert summary["dropped"]["decryption"] == [4]
    assert list(summary["misbehaving"]) == ["3"] and "partial decryption" in summary["misbehaving"]["3"]
    assert np.array_equal(np.load(out.with_suffix(".npy")), sum(vectors))  # exact, signed, no modulus


def test_fedavg_runs_over_paillier_bank_processes(material, tmp_path, logs):
    port = free_port()
    state = tmp_path / "state"
    coordinator = spawn(*_serve(material, port, tmp_path / "unused", "--task", "demo", "--rounds", "2",
                                "--samples", "600", "--state-dir", str(state)), log=logs("coordinator"))
    banks = [spawn("-m", "secagg", *_join(material, port, i), "--task", "demo", "--banks", str(BANKS),
                   "--samples", "600", "--rounds", "2", log=logs(f"bank{i}")) for i in range(BANKS)]
    codes = wait_all([coordinator, *banks])
    assert codes == [0] * (BANKS + 1)
    history = json.loads((state / "fedavg_state.json").read_text())["history"]
    assert [r["applied"] for r in history] == [True, True]
    assert all(r["included"] == list(range(BANKS)) for r in history)
    # the weight slot decodes exactly: the banks' sample counts (their w * u share its plaintexts)
    train_sizes = sum(b.X_train.shape[0] for b in make_bank_transactions(BANKS, 600, seed=0))
    assert all(r["total_weight"] == train_sizes for r in history)
    assert all(r["misbehaving"] == {} and r["aborted"] is None for r in history)


def test_a_bank_refuses_a_coordinator_announcing_another_key(material, tmp_path, logs):
    other = tmp_path / "other"
    p, q = safe_prime(256), safe_prime(256)
    public, shares = generate_threshold_keypair(BANKS, T, primes=(p, q))
    save_key_material(other, public, shares)
    port = free_port()
    serve = _serve(material, port, tmp_path / "sum", "--task", "sum", "-m", "10", "--join-deadline", "5")
    serve[serve.index("--paillier-public") + 1] = str(other / "public.json")
    coordinator = spawn(*serve, log=logs("coordinator"))
    bank = spawn("-m", "secagg", *_join(material, port, 0), "--task", "sum", "--random-vector", "1", "-m", "10",
                 log=logs("bank0"))
    codes = wait_all([bank, coordinator])
    assert codes[0] == 2  # refused the coordinator: fingerprint mismatch
    assert "fingerprint" in (tmp_path / "bank0.log").read_text()
