"""Micro-benchmarks of the hot kernels (pytest-benchmark), compared against a saved baseline.

    make bench-micro       # run and compare with benchmarks/baselines (fails on a >25% slower mean)
    make bench-baseline    # save a new baseline for this machine

Not part of the test suite (testpaths = tests); the kernels' correctness is tested in tests/.
"""

import numpy as np
import pytest

from secagg.crypto import shamir
from secagg.crypto.prg import apply_masks, expand
from secagg.crypto.randomness import TestOnlySeededRandomness
from secagg.encoding import FixedPointEncoder
from secagg.protocol.messages import MaskedInput, decode_message
from secagg.ring import Ring

RING = Ring(32)
SEEDS = [bytes([i]) * 32 for i in range(100)]
M = 100_000


@pytest.fixture(scope="module", autouse=True)
def warm():
    shamir.share(np.arange(3), 2, [1, 2, 3], TestOnlySeededRandomness(0))
    shamir.reconstruct(np.array([[1, 2]]), np.ones((1, 2, 1), dtype=np.int64))


def test_prg_expand_1m_elements(benchmark):
    benchmark(expand, SEEDS[0], 1_000_000, RING)


def test_masking_100_streams_into_100k(benchmark):
    target = np.zeros(M, dtype=np.uint32)
    benchmark(apply_masks, target, SEEDS[:50], SEEDS[50:], RING)


def test_server_sum_of_100_masked_inputs(benchmark):
    vectors = [np.full(M, i, dtype=np.uint32) for i in range(100)]

    def masked_sum():
        total = np.zeros(M, dtype=np.uint32)
        for v in vectors:
            np.add(total, v, out=total)
        return total

    benchmark(masked_sum)


def test_shamir_share_two_secrets_67_of_100(benchmark):
    limbs = shamir.secrets_to_limbs([bytes(32), bytes(range(32))]).ravel()
    rng = TestOnlySeededRandomness(1)
    benchmark(shamir.share, limbs, 67, np.arange(1, 101), rng)


def test_shamir_batch_reconstruct_100_secrets_from_67(benchmark):
    rng = TestOnlySeededRandomness(2)
    x = np.arange(1, 68)
    shares = shamir.random_field_elements(rng, (100, 67, 9)).astype(np.int64)
    benchmark(shamir.reconstruct, np.broadcast_to(x, (100, 67)), shares)


def test_quantise_1m_floats(benchmark):
    encoder = FixedPointEncoder(num_clients=100, max_weight=1000, clip=1.0)
    update = np.random.default_rng(0).uniform(-500, 500, 1_000_000)
    rng = np.random.default_rng(1)
    benchmark(encoder.encode, update, 1000, rng)


def test_decode_masked_input_100k(benchmark):
    data = MaskedInput(bytes(16), 0, 32, np.arange(M, dtype=np.uint32)).encode()
    benchmark(decode_message, data)
