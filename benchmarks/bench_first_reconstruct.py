"""What the first Shamir reconstruction costs a fresh process (issue 16, item 9).

    .venv/bin/python benchmarks/bench_first_reconstruct.py          # 5 fresh processes per case

Each case runs in a new interpreter: import secagg's Shamir module, share 100 secrets among 40
holders (t = 27), and time the first ``reconstruct`` (Lagrange coefficients and the weighted sums):

* ``numpy``: secagg's path (int64 arithmetic, no JIT);
* ``galois``: the same arithmetic in galois' GF(2^31 - 1) (the former path, whose kernels are
  JIT-compiled by numba on first use), checked equal to the first;

and the wall time of ``secagg simulate`` (its default session), whose start-up included the JIT.
Medians, in one run (the machine is noisy: compare the ratio).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

CASE = r"""
import json, sys, time
import numpy as np
from secagg.crypto import shamir
from secagg.crypto.randomness import TestOnlySeededRandomness
rng = TestOnlySeededRandomness(7)
secrets = (np.arange(900, dtype=np.int64).reshape(100, 9) * 7919) % (1 << 30)
x = np.arange(1, 41)
shares = shamir.share(secrets, 27, x, rng)  # (holders, owners * limbs)
use = np.arange(3, 30)
x_sets = np.broadcast_to(x[use], (100, 27))
values = np.ascontiguousarray(shares[use].reshape(27, 100, 9).transpose(1, 0, 2))
started = time.perf_counter()
if sys.argv[1] == "numpy":
    out = shamir.reconstruct(x_sets, values)
else:
    GF = shamir.field()
    X = GF(np.asarray(x_sets[:1], dtype=np.int64))
    num = np.multiply.reduce(X, axis=1)[:, None] / X
    d = X[:, None, :] - X[:, :, None]
    i = np.arange(27)
    d[:, i, i] = 1
    c = (num / np.multiply.reduce(d, axis=2))
    out = np.add.reduce(GF(np.broadcast_to(c.view(np.ndarray), (100, 27)))[:, :, None] * GF(values.astype(np.int64)),
                        axis=1).view(np.ndarray)
elapsed = time.perf_counter() - started
assert np.array_equal(np.asarray(out, dtype=np.int64), secrets), "wrong reconstruction"
print(json.dumps({"seconds": elapsed}))
"""


def one(kind: str) -> float:
    done = subprocess.run([sys.executable, "-c", CASE, kind], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])["seconds"]


def simulate() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "secagg", "simulate"], capture_output=True, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    rows = {}
    for kind in ("numpy", "galois"):
        rows[kind] = statistics.median(one(kind) for _ in range(args.runs))
    rows["simulate_wall"] = statistics.median(simulate() for _ in range(max(1, args.runs // 2)))
    print(json.dumps({k: round(v, 4) for k, v in rows.items()}
                     | {"galois_over_numpy": round(rows["galois"] / rows["numpy"], 1)}))


if __name__ == "__main__":
    main()
