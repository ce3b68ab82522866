"""Hot kernels in isolation: the masking kernel by chunk size, and Shamir sharing.

    python benchmarks/bench_kernels.py

* ``apply_masks`` adds 100 PRG streams into a 100,000-element uint32 vector (the work of one
  client with 99 neighbours) for several chunk sizes, beside the raw AES-256-CTR rate of the same
  run. The default chunk (secagg.crypto.prg.DEFAULT_CHUNK_BYTES) comes from this sweep.
* Shamir sharing of two 32-byte secrets (18 limbs) to h holders with threshold t: secagg's
  float64-BLAS modular product against the same polynomial evaluated with galois' field ufuncs.
"""

from __future__ import annotations

import os
import time

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from secagg.crypto import shamir
from secagg.crypto.prg import DEFAULT_CHUNK_BYTES, apply_masks
from secagg.crypto.randomness import TestOnlySeededRandomness
from secagg.ring import Ring


def best_of(fn, repeat=5):
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def chunk_sweep() -> None:
    ring, m = Ring(32), 100_000
    seeds = [os.urandom(32) for _ in range(100)]
    target = np.zeros(m, np.uint32)
    zeros, out = bytes(DEFAULT_CHUNK_BYTES), bytearray(DEFAULT_CHUNK_BYTES + 16)

    def raw_aes():
        enc = Cipher(algorithms.AES(seeds[0]), modes.CTR(bytes(16))).encryptor()
        for _ in range(100 * m * 4 // DEFAULT_CHUNK_BYTES):
            enc.update_into(zeros, out)

    raw = 100 * m * 4 / best_of(raw_aes)
    print(f"raw AES-256-CTR key stream: {raw / 1e9:.2f} GB/s")
    print(f"{'chunk KiB':>9} {'apply_masks GB/s':>16} {'of raw AES':>10}")
    for chunk in (1 << 14, 1 << 15, 1 << 16, 1 << 17, 1 << 18, 1 << 19, 1 << 20):
        seconds = best_of(lambda: apply_masks(target, seeds[:50], seeds[50:], ring, chunk_bytes=chunk))
        rate = 100 * m * 4 / seconds
        mark = "  <- default" if chunk == DEFAULT_CHUNK_BYTES else ""
        print(f"{chunk // 1024:>9} {rate / 1e9:>16.2f} {rate / raw:>10.2f}{mark}")


def shamir_sharing() -> None:
    GF = shamir.field()
    print(f"\n{'holders':>7} {'t':>4} {'secagg ms':>9} {'galois ufuncs ms':>16} {'speed-up':>8}")
    for holders, t in ((100, 67), (500, 334), (72, 26)):
        rng = TestOnlySeededRandomness(1)
        limbs = shamir.secrets_to_limbs([bytes(32), bytes(range(32))]).ravel()
        x = np.arange(1, holders + 1)
        ours = best_of(lambda: shamir.share(limbs, t, x, rng))
        coefficients = GF(np.vstack([limbs.astype(np.int64),
                                     shamir.random_field_elements(rng, (t - 1, limbs.size)).astype(np.int64)]))

        def with_galois():
            V = GF(x)[:, None] ** np.arange(t)
            return np.add.reduce(V[:, :, None] * coefficients[None, :, :], axis=1)

        with_galois()
        reference = best_of(with_galois)
        print(f"{holders:>7} {t:>4} {1e3 * ours:>9.2f} {1e3 * reference:>16.2f} {reference / ours:>7.1f}x")


if __name__ == "__main__":
    shamir.field()
    chunk_sweep()
    shamir_sharing()
