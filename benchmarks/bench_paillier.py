"""Paillier path: values per second, packed vs unpacked python-paillier, and one end-to-end round.

    .venv/bin/pip install -e '.[paillier]'
    .venv/bin/python benchmarks/bench_paillier.py                 # ~4 minutes with the end-to-end job
    .venv/bin/python benchmarks/bench_paillier.py --skip-e2e      # throughput only, ~2 minutes
    .venv/bin/python benchmarks/bench_paillier.py --e2e-only      # the end-to-end round only
    .venv/bin/python benchmarks/bench_paillier.py --e2e-only --network   # and with real processes, ~8 minutes

Throughput, on the same key in the same run, for 2048- and 3072-bit keys:

* unpacked ``phe``: ``PaillierPublicKey.encrypt`` of one float per ciphertext, ``EncryptedNumber``
  addition, ``PaillierPrivateKey.decrypt`` (CRT, the fastest single-key decryption);
* packed (secagg): fixed-point values packed ``slots`` per plaintext for a sum of 10 parties
  (16 fractional bits, clip 1, weights up to 1000), encrypted with fresh obfuscators computed on the
  spot ("encrypt") or taken from a pool computed ahead of time ("encrypt, pool ready"), added, and
  decrypted by threshold decryption (t partial decryptions + combination).

Per ciphertext, same key: python-paillier's ``raw_encrypt`` (``r^N`` with a full-length exponent)
against secagg's encryption with short-exponent obfuscators from the fixed-base table (the default
for keys from ``generate_threshold_keypair``) and with textbook ``r^N`` obfuscators.

Proofs: per ciphertext, the cost of a partial decryption beside the cost of proving and of
verifying a batch of them (secagg.paillier.proofs).

End to end (``--e2e-only``): the whole job of 10 banks x 100,000 parameters (2048-bit key,
t = 7) on this machine through the two roles (secagg.paillier.roles), every bank's work as a task
in a pool of ``--workers`` processes (the machine's cores standing in for the banks' own
machines): each bank quantises, packs, encrypts and signs its contribution; the coordinator checks
every contribution; t banks each check the signed contributions, recompute the aggregate,
partially decrypt it and prove it; the coordinator verifies the proofs, combines, unpacks and
decodes. Reported: wall time of the whole job, one bank's encryption and decryption times, the
coordinator's verification times and the largest decoding error against its bound.

Over the network (``--network``): the same job as 11 processes, ``secagg serve --aggregator
paillier`` and one ``secagg join --paillier-share`` per bank under mutual TLS; every bank decrypts
(the coordinator asks them all and checks every proof), each on one core, so the 10 banks' work
shares this machine's cores where a consortium would run it in parallel on ten machines.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine_info  # noqa: E402

from secagg.encoding import FixedPointEncoder  # noqa: E402
from secagg.paillier import (  # noqa: E402
    PackingScheme,
    add_ciphertexts,
    combine_partial_decryptions,
    encrypt_packed,
    generate_threshold_keypair,
    partial_decrypt,
    precompute_obfuscators,
)


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def throughput(key_bits: int, samples: int) -> dict:
    import phe

    from secagg.paillier.threshold import safe_prime

    start = time.perf_counter()
    p, q = safe_prime(key_bits // 2), safe_prime(key_bits // 2)
    public, shares = generate_threshold_keypair(10, 7, primes=(p, q))  # the primes kept for phe's baseline
    keygen = time.perf_counter() - start
    phe_public = public.phe_key
    rng = np.random.default_rng(0)
    values = rng.uniform(-1, 1, samples)
    row = {"key_bits": key_bits, "keygen_s": keygen}
    # unpacked phe: one value per ciphertext
    encrypted, seconds = timed(lambda: [phe_public.encrypt(float(v)) for v in values])
    row["phe_encrypt_vps"] = samples / seconds
    _, seconds = timed(lambda: [a + b for a, b in zip(encrypted, encrypted)])
    row["phe_add_vps"] = samples / seconds
    # single-key decryption (CRT) of the same key, as a dealer holding p and q could do it
    private = phe.paillier.PaillierPrivateKey(phe_public, p, q)
    _, seconds = timed(lambda: [private.decrypt(c) for c in encrypted[: max(20, samples // 10)]])
    row["phe_decrypt_vps"] = max(20, samples // 10) / seconds
    # packed
    encoder = FixedPointEncoder(num_clients=10, max_weight=1000, clip=1.0, fractional_bits=16)
    scheme = PackingScheme(key_bits, max(encoder.value_bound, 1000), 10)
    count = scheme.slots * max(32, samples // scheme.slots)
    _, table_s = timed(lambda: precompute_obfuscators(public, 1))  # the fixed-base table, once per key
    quantised = encoder.quantize(rng.uniform(-1000, 1000, count), 1000, rng)
    plaintexts, pack_s = timed(lambda: scheme.pack(quantised))
    ciphertexts, encrypt_s = timed(lambda: encrypt_packed(public, plaintexts))
    pool, pool_s = timed(lambda: precompute_obfuscators(public, len(plaintexts)))
    _, online_s = timed(lambda: encrypt_packed(public, plaintexts, pool))
    total, add_s = timed(lambda: add_ciphertexts(public, [ciphertexts, ciphertexts]))
    partials, partial_s = timed(lambda: [partial_decrypt(s, total) for s in shares[:7]])
    sums, combine_s = timed(lambda: combine_partial_decryptions(public, partials))
    unpacked, unpack_s = timed(lambda: scheme.unpack(sums, count, 2))
    assert np.array_equal(unpacked, 2 * quantised)
    row |= {
        "slots": scheme.slots, "slot_bytes": scheme.slot_bytes,
        "packed_encrypt_vps": count / (pack_s + encrypt_s),
        "packed_encrypt_pool_ready_vps": count / (pack_s + online_s),
        "obfuscator_pool_s_per_ciphertext": pool_s / len(plaintexts), "fixed_base_table_s": table_s,
        "packed_add_vps": count / add_s,
        "packed_threshold_decrypt_vps": count / (partial_s + combine_s + unpack_s),
        "partial_decrypt_s_per_ciphertext_per_party": partial_s / 7 / len(total),
    }
    row["packed_over_phe_encrypt"] = row["packed_encrypt_vps"] / row["phe_encrypt_vps"]
    # per ciphertext: phe's raw_encrypt against ours (short exponent, and textbook r^N)
    import dataclasses

    probes = 40
    _, seconds = timed(lambda: [phe_public.raw_encrypt(int(i)) for i in range(probes)])
    row["phe_raw_encrypt_ms"] = 1e3 * seconds / probes
    _, seconds = timed(lambda: encrypt_packed(public, list(range(4 * probes))))
    row["short_exponent_encrypt_ms"] = 1e3 * seconds / (4 * probes)
    textbook = dataclasses.replace(public, obfuscation_base=None)
    _, seconds = timed(lambda: encrypt_packed(textbook, list(range(probes // 2))))
    row["textbook_encrypt_ms"] = 1e3 * seconds / (probes // 2)
    return row


def _bank(share, bank_seed, verify_keys, session_id, floor):
    from secagg.crypto.randomness import TestOnlySeededRandomness
    from secagg.crypto.signatures import IdentityKey
    from secagg.paillier.roles import BankSession

    identity = IdentityKey.generate(TestOnlySeededRandomness(bank_seed, b"bench-bank"))  # benchmark only
    return BankSession(share, session_id, identity, verify_keys, min_contributors=floor)


def _bank_contribute(args) -> tuple[bytes, float]:
    """One bank, in its own process: read the round request, quantise w*u and w, pack, encrypt, sign."""
    share, seed, verify_keys, session_id, floor, request, scheme, encoder, update, weight, encoding = args
    bank = _bank(share, seed, verify_keys, session_id, floor)
    start = time.perf_counter()
    checked = bank.read_request(request)
    values = encoder.quantize(weight * update, weight, np.random.default_rng(seed))
    message = bank.contribute(checked, scheme.pack(np.append(values, weight)), encoding=encoding)
    return message, time.perf_counter() - start


def end_to_end(banks: int, params: int, key_bits: int, threshold: int, workers: int) -> dict:
    """The whole job through the roles: signed contributions, banks recomputing the aggregate,
    proven partial decryptions that the coordinator verifies."""
    import os
    from concurrent.futures import ProcessPoolExecutor

    from secagg.crypto.randomness import TestOnlySeededRandomness
    from secagg.crypto.signatures import IdentityKey
    from secagg.paillier.roles import PaillierCoordinator, encoding_digest

    (public, shares), setup_s = timed(lambda: generate_threshold_keypair(banks, threshold, key_bits))
    verify_keys = {i: IdentityKey.generate(TestOnlySeededRandomness(i, b"bench-bank")).public_bytes
                   for i in range(banks)}
    encoder = FixedPointEncoder(num_clients=banks, max_weight=1000, clip=1.0, fractional_bits=16)
    scheme = PackingScheme(key_bits, max(encoder.value_bound, 1000), banks)
    rng = np.random.default_rng(1)
    updates = [rng.uniform(-1, 1, params) for _ in range(banks)]
    weight, session_id, floor = 500, os.urandom(16), 2
    count = scheme.plaintexts_for(params + 1)
    encoding = encoding_digest({"benchmark": "end_to_end", "values": params + 1})
    coordinator = PaillierCoordinator(public, session_id, verify_keys, round=1, ciphertexts=count,
                                      min_contributors=floor, encoding=encoding)
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(abs, range(workers)))  # start the workers before the clock
        start = time.perf_counter()
        requests = coordinator.start()
        contributed = list(pool.map(_bank_contribute, [
            (shares[i], i, verify_keys, session_id, floor, requests[i], scheme, encoder, u, weight, encoding)
            for i, u in enumerate(updates)]))
        verify_start = time.perf_counter()
        decryption = {}
        for i, (message, _) in enumerate(contributed):
            decryption = coordinator.receive(i, message) or decryption
        contributions_verified_s = time.perf_counter() - verify_start
        # t banks decrypt (the others would too, in parallel on their own machines); each bank
        # spreads its exponentiations over the pool, so both cores stay busy however many banks
        # there are (a bank's own machine would use its own cores the same way)
        asked = sorted(decryption)[:threshold]
        replies = []
        for i in asked:
            bank = _bank(shares[i], i, verify_keys, session_id, floor)
            replies.append(timed(lambda bank=bank, i=i: bank.handle(decryption[i], mapper=pool.map)))
        coordinator.mapper = pool.map  # the coordinator's machine verifies on all its cores too
        verify_start = time.perf_counter()
        for i, (reply, _) in zip(asked, replies):
            coordinator.receive(i, reply)
        coordinator.close_round()  # the other banks' partials would only repeat the work here
        proofs_verified_s = time.perf_counter() - verify_start
        totals = scheme.unpack(coordinator.result.plaintexts, params + 1, banks)
        wall = time.perf_counter() - start
    weighted_sum, total_weight = totals[:-1] / encoder.scale, int(totals[-1])
    error = float(np.max(np.abs(weighted_sum - weight * np.sum(updates, axis=0))))
    return {"banks": banks, "params": params, "key_bits": key_bits, "threshold": threshold, "workers": workers,
            "decryptors": len(asked), "setup_s": setup_s, "ciphertexts_per_bank": count,
            "bank_encrypt_s_mean": float(np.mean([s for _, s in contributed])),
            "bank_decrypt_and_prove_s_mean": float(np.mean([s for _, s in replies])),
            "contributions_verified_s": contributions_verified_s, "proofs_verified_s": proofs_verified_s,
            "job_s": wall, "upload_mib_per_bank": count * 2 * key_bits / 8 / 2**20,
            "max_abs_error": error, "error_bound": encoder.error_bound(banks), "total_weight_ok": total_weight == banks * weight}


def network_end_to_end(banks: int, params: int, key_bits: int, threshold: int) -> dict:
    """The same job with real processes: ``secagg serve --aggregator paillier`` and one ``secagg
    join --paillier-share`` process per bank, under mutual TLS on 127.0.0.1. Every bank decrypts
    (the coordinator asks all of them), each on one core: on this machine the 10 banks share 2."""
    import json
    import resource
    import socket
    import subprocess
    import tempfile
    from pathlib import Path

    from secagg.paillier.threshold import save_key_material
    from secagg.transport.certs import make_dev_pki

    bound = 10**8  # 10 banks x 2 x 10^8 < 2^32: four-byte slots, 63 values per plaintext as FedAvg's
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_dev_pki(root / "pki", banks)
        (public, shares), setup_s = timed(lambda: generate_threshold_keypair(banks, threshold, key_bits))
        save_key_material(root / "keys", public, shares)
        rng = np.random.default_rng(3)
        vectors = [rng.integers(-bound, bound + 1, params, dtype=np.int64) for _ in range(banks)]
        for i, v in enumerate(vectors):
            np.save(root / f"v{i}.npy", v)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        pki, keys = root / "pki", root / "keys"
        common = ["--paillier-public", str(keys / "public.json"), "--verify-keys", str(pki / "verify_keys.json"),
                  "-n", str(banks), "--ca", str(pki / "ca.pem"), "--quiet"]
        serve = [sys.executable, "-m", "secagg", "serve", "--task", "sum", "--aggregator", "paillier", *common,
                 "-m", str(params), "--value-bound", str(bound), "--address", f"127.0.0.1:{port}",
                 "--cert", str(pki / "coordinator.pem"), "--key", str(pki / "coordinator.key"),
                 "--join-deadline", "900", "--deadline", "900", "--linger", "1", "--output", str(root / "sum")]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        processes = [subprocess.Popen(serve, stdout=subprocess.DEVNULL)]
        for i in range(banks):
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "secagg", "join", "--task", "sum", "--id", str(i), *common,
                 "--vector", str(root / f"v{i}.npy"), "--paillier-share", str(keys / f"share-{i + 1}.json"),
                 "--identity", str(pki / f"identity-{i}.key"), "--cert", str(pki / f"client-{i}.pem"),
                 "--key", str(pki / f"client-{i}.key"), "--coordinator", f"localhost:{port}"],
                stdout=subprocess.DEVNULL))
        codes = [p.wait(timeout=1800) for p in processes]
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        summary = json.loads((root / "sum.json").read_text())
        exact = bool(np.array_equal(np.load(root / "sum.npy"), np.sum(vectors, axis=0)))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"banks": banks, "params": params, "key_bits": key_bits, "threshold": threshold, "setup_s": setup_s,
            "job_s": wall, "session_s": summary["seconds"], "cpu_s": cpu, "exit_codes": codes, "exact": exact,
            "survivors": len(summary["survivors"])}


def proof_cost(key_bits: int = 2048, count: int = 200) -> dict:
    """Per ciphertext, same key: the partial decryption itself, proving a batch, verifying it."""
    from secagg.paillier.proofs import (
        prove_partial_decryptions,
        prove_plaintext_knowledge,
        verify_partial_decryptions,
        verify_plaintext_knowledge,
    )
    from secagg.paillier.vector import encrypt_packed_with_exponents

    public, shares = generate_threshold_keypair(3, 2, key_bits)
    plaintexts = list(range(count))
    (ciphertexts, exponents), encrypt_s = timed(lambda: encrypt_packed_with_exponents(public, plaintexts))
    partials, decrypt_s = timed(lambda: [p.value for p in partial_decrypt(shares[0], ciphertexts)])
    proof, prove_s = timed(lambda: prove_partial_decryptions(shares[0], ciphertexts, partials, b"bench"))
    _, verify_s = timed(lambda: verify_partial_decryptions(public, 1, ciphertexts, partials, proof, b"bench"))
    knowledge, know_prove_s = timed(lambda: prove_plaintext_knowledge(public, ciphertexts, plaintexts, exponents,
                                                                      b"bench"))
    _, know_verify_s = timed(lambda: verify_plaintext_knowledge(public, ciphertexts, knowledge, b"bench"))
    return {"key_bits": key_bits, "ciphertexts": count, "partial_decrypt_ms": 1e3 * decrypt_s / count,
            "prove_ms": 1e3 * prove_s / count, "verify_ms": 1e3 * verify_s / count,
            "encrypt_ms": 1e3 * encrypt_s / count, "knowledge_prove_ms": 1e3 * know_prove_s / count,
            "knowledge_verify_ms": 1e3 * know_verify_s / count}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=400, help="values for the unpacked phe baseline")
    parser.add_argument("--skip-e2e", action="store_true", help="throughput table only")
    parser.add_argument("--e2e-only", action="store_true", help="the end-to-end round only")
    parser.add_argument("--workers", type=int, default=2, help="processes standing in for the banks' machines")
    parser.add_argument("--threshold", type=int, default=7, help="t of the 10 banks")
    parser.add_argument("--proofs-only", action="store_true", help="the proof costs only")
    parser.add_argument("--network", action="store_true",
                        help="also the end-to-end job with a coordinator process and one process per bank (grpc)")
    args = parser.parse_args()
    info = machine_info()
    print(f"# Paillier benchmark {info['date']}: {info['cpu']}, {info['cores']} cores, Python {info['python']}")
    print(f"{'key':>5} {'keygen s':>8} | {'phe enc v/s':>11} {'phe add v/s':>11} {'phe dec v/s':>11} | "
          f"{'slots':>5} {'packed enc v/s':>14} {'pool ready':>10} {'add v/s':>10} {'thr dec v/s':>11} | {'enc x':>6}")
    for key_bits in () if args.e2e_only or args.proofs_only else (2048, 3072):
        r = throughput(key_bits, args.samples)
        print(f"{key_bits:>5} {r['keygen_s']:>8.2f} | {r['phe_encrypt_vps']:>11.0f} {r['phe_add_vps']:>11.0f} "
              f"{r['phe_decrypt_vps']:>11.0f} | {r['slots']:>5} {r['packed_encrypt_vps']:>14.0f} "
              f"{r['packed_encrypt_pool_ready_vps']:>10.0f} {r['packed_add_vps']:>10.0f} "
              f"{r['packed_threshold_decrypt_vps']:>11.0f} | {r['packed_over_phe_encrypt']:>5.0f}x", flush=True)
        print(f"      per ciphertext: phe raw_encrypt {r['phe_raw_encrypt_ms']:.2f} ms, secagg short exponent "
              f"{r['short_exponent_encrypt_ms']:.2f} ms ({r['phe_raw_encrypt_ms'] / r['short_exponent_encrypt_ms']:.1f}x), "
              f"secagg textbook r^N {r['textbook_encrypt_ms']:.2f} ms", flush=True)
        print(f"      fixed-base table (once per key and process): {r['fixed_base_table_s']:.2f} s; "
              f"obfuscator (pool): {1e3 * r['obfuscator_pool_s_per_ciphertext']:.2f} ms per ciphertext; "
              f"partial decryption: {1e3 * r['partial_decrypt_s_per_ciphertext_per_party']:.2f} ms per ciphertext "
              "per party", flush=True)
    if not args.e2e_only:
        for key_bits in (2048, 3072):
            r = proof_cost(key_bits)
            print(f"      proofs, {key_bits} bits, batch of {r['ciphertexts']}: partial decryption "
                  f"{r['partial_decrypt_ms']:.2f} ms per ciphertext; proving {r['prove_ms']:.2f} ms, verifying "
                  f"{r['verify_ms']:.2f} ms per ciphertext ({100 * r['prove_ms'] / r['partial_decrypt_ms']:.0f}% and "
                  f"{100 * r['verify_ms'] / r['partial_decrypt_ms']:.0f}% of a partial decryption)", flush=True)
            print(f"      proof of plaintext knowledge, {key_bits} bits, batch of {r['ciphertexts']}: encryption "
                  f"{r['encrypt_ms']:.2f} ms per ciphertext; proving {r['knowledge_prove_ms']:.3f} ms, verifying "
                  f"{r['knowledge_verify_ms']:.2f} ms per ciphertext ("
                  f"{100 * r['knowledge_verify_ms'] / r['partial_decrypt_ms']:.0f}% of a partial decryption)",
                  flush=True)
    if not args.skip_e2e and not args.proofs_only:
        r = end_to_end(10, 100_000, 2048, args.threshold, args.workers)
        print(f"\nend to end, {r['banks']} banks x {r['params']:,} parameters, {r['key_bits']}-bit key, t = {r['threshold']}, "
              f"{r['decryptors']} decrypting banks with proofs, {r['workers']} worker processes: whole job "
              f"{r['job_s']:.1f} s (signed encryptions, the coordinator's checks, the banks recomputing the "
              f"aggregate, proven partial decryptions, their verification, decoding); one bank encrypts its "
              f"{r['ciphertexts_per_bank']} ciphertexts ({r['upload_mib_per_bank']:.2f} MiB) in "
              f"{r['bank_encrypt_s_mean']:.2f} s and decrypts and proves in {r['bank_decrypt_and_prove_s_mean']:.1f} s "
              f"(on {r['workers']} cores); "
              f"the coordinator checks the contributions in {r['contributions_verified_s']:.2f} s and the proofs in "
              f"{r['proofs_verified_s']:.1f} s; key setup {r['setup_s']:.1f} s; max error {r['max_abs_error']:.2e} "
              f"(bound {r['error_bound']:.2e}); total weight exact: {r['total_weight_ok']}", flush=True)
    if args.network:
        r = network_end_to_end(10, 100_000, 2048, args.threshold)
        print(f"\nend to end over the network, {r['banks']} bank processes x {r['params']:,} values and a coordinator "
              f"process, mutual TLS on 127.0.0.1, {r['key_bits']}-bit key, t = {r['threshold']}, every bank "
              f"decrypting with proofs: whole job {r['job_s']:.1f} s from the first process start to the last exit "
              f"(session {r['session_s']:.1f} s), {r['cpu_s']:.0f} CPU seconds over all processes on this machine's "
              f"2 cores; exit codes {r['exit_codes']}; {r['survivors']} banks in the sum; exact: {r['exact']}; "
              f"key setup {r['setup_s']:.1f} s (not in the job)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
