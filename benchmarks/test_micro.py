"""Micro-benchmarks of the hot kernels (pytest-benchmark), each compared with a reference kernel.

    make bench-micro       # run, then benchmarks/compare_micro.py against benchmarks/baselines/micro_ratios.json
    make bench-baseline    # save this run's ratios as the new baseline

Absolute times say more about the machine than about the code, so the comparison is of ratios:
each kernel's best time over the best time of ``test_reference_aes_ctr_4mib`` (raw AES-256-CTR
from ``cryptography``: the crypto floor every masking kernel is built on), both measured in the
same run. Not part of the test suite (testpaths = tests); the kernels' correctness is tested in tests/.
"""

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

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


def test_reference_aes_ctr_4mib(benchmark):
    """The reference: 4 MiB of AES-256-CTR key stream, the floor the masking kernels are measured against."""
    zeros = bytes(4 << 20)

    def keystream():
        return Cipher(algorithms.AES(SEEDS[0]), modes.CTR(bytes(16))).encryptor().update(zeros)

    benchmark(keystream)


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
