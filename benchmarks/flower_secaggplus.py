"""One round of Flower's SecAgg+ (PyPI ``flwr``), driven in process, every party timed.

What runs is Flower's code, unchanged:

* **clients**: the four stage functions of ``flwr.client.mod.secure_aggregation.secaggplus_mod``
  that the ``secaggplus_mod`` client mod dispatches to: ``_setup`` (two X25519 key pairs),
  ``_share_keys`` (``create_shares`` — PyCryptodome Shamir over GF(2^128) — of the mask seed and
  of sk1, ``encrypt`` of each share bundle), ``_collect_masked_vectors`` (``decrypt``,
  ``quantize``, ``pseudo_rand_gen`` masks, ``parameters_addition/subtraction/mod``) and
  ``_unmask``; each is called with a ``SecAggPlusState`` and a ``ConfigRecord`` exactly as the mod
  calls it (the mod's Message wrapping is skipped: no network, no serialisation, in both libraries).
* **server**: the steps of ``flwr.server.workflow.secure_aggregation.SecAggPlusWorkflow`` —
  ``setup_stage`` (neighbour ring of ``num_shares`` around each shuffled node),
  ``share_keys_stage`` (forwarding ciphertexts), ``collect_masked_vectors_stage`` (summing with
  ``parameters_addition``/``parameters_mod``) and ``unmask_stage`` (``combine_shares``,
  ``pseudo_rand_gen``, ``generate_shared_key``, ``factor_extract``, ``dequantize``) — replayed
  statement for statement on the same Flower functions, without its Grid/strategy plumbing.

Dropped clients never run ``_collect_masked_vectors`` (they vanish after sharing keys), as in the
secagg side of the comparison.

:func:`run_flower_app_row` is the end-to-end row: one Flower app (bank anti-fraud, FedAvg) run in
Flower's simulation engine with secagg's ``SecAggMaskingWorkflow`` + ``secagg_masking_mod`` and
with Flower's ``SecAggPlusWorkflow`` + ``secaggplus_mod`` (messaging, training and all; see
``bench_flower_app.py``).
"""

from __future__ import annotations

import importlib
import time

import numpy as np


def run_flower_round(n: int, m: int, num_shares: int, threshold: int, dropped: set[int], *,
                     clipping_range: float = 8.0, quantization_range: int = 4194304,
                     modulus_range: int = 4294967296, seed: int = 0) -> dict:
    """Run one SecAgg+ round among n clients with m-element updates; returns timings and the error."""
    from flwr.common import ConfigRecord, ndarrays_to_parameters
    from flwr.common.secure_aggregation.crypto.shamir import combine_shares
    from flwr.common.secure_aggregation.crypto.symmetric_encryption import generate_shared_key
    from flwr.common.secure_aggregation.ndarrays_arithmetic import (
        factor_extract,
        get_parameters_shape,
        parameters_addition,
        parameters_mod,
        parameters_subtraction,
    )
    from flwr.common.secure_aggregation.quantization import dequantize
    from flwr.common.secure_aggregation.secaggplus_constants import Key
    from flwr.common.secure_aggregation.secaggplus_utils import pseudo_rand_gen
    from flwr.common import bytes_to_ndarray
    from flwr.supercore.primitives.asymmetric import bytes_to_private_key, bytes_to_public_key

    mod = importlib.import_module("flwr.client.mod.secure_aggregation.secaggplus_mod")
    rng = np.random.default_rng(seed)
    node_ids = list(range(1, n + 1))
    updates = {nid: rng.uniform(-1, 1, m).astype(np.float32) for nid in node_ids}
    client_seconds = dict.fromkeys(node_ids, 0.0)
    server_seconds = 0.0

    def client(nid, fn, *args):
        start = time.perf_counter()
        out = fn(*args)
        client_seconds[nid] += time.perf_counter() - start
        return out

    # setup_stage: parameters and the neighbour ring
    start = time.perf_counter()
    order = [node_ids[i] for i in rng.permutation(n)]
    half_share = num_shares >> 1
    neighbours = {nid: {order[(idx + off) % n] for off in range(-half_share, half_share + 1)}
                  for idx, nid in enumerate(order)}
    setup_cfg = {Key.SAMPLE_NUMBER: n, Key.SHARE_NUMBER: num_shares, Key.THRESHOLD: threshold,
                 Key.CLIPPING_RANGE: clipping_range, Key.TARGET_RANGE: quantization_range,
                 Key.MOD_RANGE: modulus_range, Key.MAX_WEIGHT: 1.0}
    server_seconds += time.perf_counter() - start
    states, public_keys = {}, {}
    for nid in node_ids:
        states[nid] = mod.SecAggPlusState()
        states[nid].nid = nid
        reply = client(nid, mod._setup, states[nid], ConfigRecord(dict(setup_cfg)))
        start = time.perf_counter()
        public_keys[nid] = [reply[Key.PUBLIC_KEY_1], reply[Key.PUBLIC_KEY_2]]
        server_seconds += time.perf_counter() - start

    # share_keys_stage
    active = set(node_ids)
    forward_srcs = {nid: [] for nid in active}
    forward_ciphertexts = {nid: [] for nid in active}
    for nid in node_ids:
        start = time.perf_counter()
        cfg = ConfigRecord({str(nb): public_keys[nb] for nb in neighbours[nid] & active})
        server_seconds += time.perf_counter() - start
        reply = client(nid, mod._share_keys, states[nid], cfg)
        start = time.perf_counter()
        for dst, ciphertext in zip(reply[Key.DESTINATION_LIST], reply[Key.CIPHERTEXT_LIST]):
            if dst in forward_ciphertexts:
                forward_ciphertexts[dst].append(ciphertext)
                forward_srcs[dst].append(nid)
        server_seconds += time.perf_counter() - start

    # collect_masked_vectors_stage (the dropped clients never answer)
    masked_vector = None
    survivors = [nid for nid in node_ids if nid not in dropped]
    for nid in survivors:
        start = time.perf_counter()
        cfg = ConfigRecord({Key.CIPHERTEXT_LIST: forward_ciphertexts[nid], Key.SOURCE_LIST: forward_srcs[nid]})
        server_seconds += time.perf_counter() - start
        reply = client(nid, mod._collect_masked_vectors, states[nid], cfg, 1, ndarrays_to_parameters([updates[nid]]))
        start = time.perf_counter()
        vec = [bytes_to_ndarray(b) for b in reply[Key.MASKED_PARAMETERS]]
        masked_vector = vec if masked_vector is None else parameters_addition(masked_vector, vec)
        server_seconds += time.perf_counter() - start
    start = time.perf_counter()
    masked_vector = parameters_mod(masked_vector, modulus_range)
    active_nids = set(survivors)
    dead_nids = set(node_ids) - active_nids
    server_seconds += time.perf_counter() - start

    # unmask_stage
    collected = {nid: [] for nid in node_ids}
    for nid in survivors:
        start = time.perf_counter()
        cfg = ConfigRecord({Key.ACTIVE_NODE_ID_LIST: list(neighbours[nid] & active_nids),
                            Key.DEAD_NODE_ID_LIST: list(neighbours[nid] & dead_nids)})
        server_seconds += time.perf_counter() - start
        reply = client(nid, mod._unmask, states[nid], cfg)
        start = time.perf_counter()
        for owner, share in zip(reply[Key.NODE_ID_LIST], reply[Key.SHARE_LIST]):
            collected[owner].append(share)
        server_seconds += time.perf_counter() - start
    start = time.perf_counter()
    for nid, share_list in collected.items():
        if len(share_list) < threshold:
            raise RuntimeError("Flower SecAgg+: not enough shares to unmask")
        secret = combine_shares(share_list)
        if nid in active_nids:
            private_mask = pseudo_rand_gen(secret, modulus_range, get_parameters_shape(masked_vector))
            masked_vector = parameters_subtraction(masked_vector, private_mask)
        else:
            for neighbor in neighbours[nid] - {nid}:
                shared_key = generate_shared_key(bytes_to_private_key(secret),
                                                 bytes_to_public_key(public_keys[neighbor][0]))
                pairwise_mask = pseudo_rand_gen(shared_key, modulus_range, get_parameters_shape(masked_vector))
                if nid > neighbor:
                    masked_vector = parameters_addition(masked_vector, pairwise_mask)
                else:
                    masked_vector = parameters_subtraction(masked_vector, pairwise_mask)
    recon = parameters_mod(masked_vector, modulus_range)
    q_total_ratio, recon = factor_extract(recon)
    aggregated = dequantize(recon, clipping_range, quantization_range)
    offset = -(len(active_nids) - 1) * clipping_range
    for vec in aggregated:
        vec += offset
        vec *= quantization_range / q_total_ratio
    server_seconds += time.perf_counter() - start
    expected = np.mean([updates[nid] for nid in survivors], axis=0)
    return {
        "client_seconds_total": sum(client_seconds.values()),
        "client_seconds_max": max(client_seconds.values()),
        "server_seconds": server_seconds,
        "max_abs_error": float(np.max(np.abs(aggregated[0] - expected))),
        "survivors": len(survivors),
    }


def run_flower_app_row(n: int = 100, neighbors: int = 50, threshold: int = 26, *, rounds: int = 4,
                       samples: int = 600, hidden: str = "256,374", crash: str = "",
                       output: str | None = None) -> dict:
    """Flower + secagg workflow vs Flower + its SecAgg+ workflow, same app, same machine (one row).

    ``m`` is the MLP's weight count (``hidden = "256,374"``: 100,077). Per-round times are the fit
    workflow's wall time averaged over rounds 2.. (round 1 also starts Ray's workers). The table
    goes to ``output`` (default benchmarks/results/flower_app.txt).
    """
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_flower_app import main as bench_app

    ours, flower = bench_app(["--banks", str(n), "--neighbors", str(neighbors), "--threshold", str(threshold),
                              "--rounds", str(rounds), "--samples", str(samples), "--hidden", hidden,
                              "--crash", crash, *(["--output", output] if output else [])])
    sizes = [13, *map(int, hidden.split(",")), 1]
    m = sum(a * b + b for a, b in zip(sizes, sizes[1:]))
    offline = [c for c in crash.split(",") if c]
    return {"sweep": "flower_app", "n": n, "m": m, "graph": f"k={neighbors}", "dropout": len(offline) / n,
            "flower_wall_s": flower["per_round_s"], "secagg_wall_s": ours["per_round_s"],
            "speedup": flower["per_round_s"] / ours["per_round_s"],
            "flower_accuracy": flower["final"]["accuracy"], "secagg_accuracy": ours["final"]["accuracy"],
            "flower_roc_auc": flower["final"]["roc_auc"], "secagg_roc_auc": ours["final"]["roc_auc"]}
