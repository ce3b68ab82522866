"""Review 14, attacks 3-5: the participant's policy against the coordinator's word, and edge cases.

These attacks fail (the claims hold); the tests document them.

* Fix 2 of review 13: the coordinator declares ``corrupt_clients=0`` so that the sans-IO session's
  smaller-sum check (which takes the declared c) passes; the participant's ``ClientPolicy`` checks
  with its own ``min_corrupt`` and refuses.
* An honest-mode session (no signatures, only the survivor list's length: review 13's padding
  works there) announced to a participant whose own session is malicious is refused.
* Parameter edges (min_sum = n, min_sum > n, c close to n, tiny n) give typed errors, never a crash.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from secagg.crypto.randomness import TestOnlySeededRandomness
from secagg.crypto.signatures import IdentityKey
from secagg.errors import ParameterError, ProtocolViolation
from secagg.protocol.bounds import log2_smaller_sum
from secagg.protocol.client import ClientSession
from secagg.protocol.config import SecAggConfig
from secagg.transport.network import ClientPolicy
from secagg.transport.sessions import MaskingSpec, client_run

SID = bytes(range(32, 48))


def keys(n: int):
    identity = IdentityKey.generate(TestOnlySeededRandomness(5))
    return identity, {u: identity.public_bytes for u in range(n)}


def test_a_coordinator_declaring_no_corrupt_client_does_not_pass_the_participants_smaller_sum_check():
    # n = 30, K = 25, t = 15, min_sum = 17: 2^-46 with c = 0, 2^-38.7 with the participant's c = 2
    declared = SecAggConfig(num_clients=30, threshold=15, vector_length=2, neighbors=25, malicious=True,
                            corrupt_clients=0)
    assert log2_smaller_sum(30, 25, 15, 17, 0) < -40 < log2_smaller_sum(30, 25, 15, 17, 2)
    identity, verify_keys = keys(30)
    # the sans-IO session takes the declared number (documented): it accepts
    ClientSession(declared, 0, SID, np.zeros(2, np.uint64), identity=identity, verify_keys=verify_keys,
                  min_survivors=17)
    # the participant's policy takes its own
    with pytest.raises(ProtocolViolation, match="fewer than this client's 17 inputs with 2 corrupt clients"):
        ClientPolicy(num_clients=30, min_threshold=15, min_neighbors=25, require_malicious=True, min_corrupt=2,
                     min_sum=17).check(declared)


def test_a_malicious_participant_refuses_an_honest_mode_session():
    pytest.importorskip("dp_accounting")
    from tests.review14.test_one_sided_masks import N, dp_job
    from secagg.fedavg.network import FedAvgClient

    rng = np.random.default_rng(0)
    X = rng.normal(size=(10, 13))
    participant = FedAvgClient(dp_job(), 0, X, (X[:, 0] > 0).astype(np.int64), num_clients=N)
    own = participant.expected_session().config
    honest = SecAggConfig(num_clients=N, threshold=own.threshold, vector_length=own.vector_length,
                          neighbors=own.neighbors, malicious=False, modulus_bits=own.modulus_bits)
    with pytest.raises(ProtocolViolation, match="requires the malicious-server mode"):
        participant.policy(N).check(honest)


@pytest.mark.parametrize("n, neighbors, threshold", [(2, None, 1), (3, None, 2), (4, None, 3), (8, 6, 5)])
def test_min_survivors_at_and_above_n_are_typed(n, neighbors, threshold):
    config = SecAggConfig(num_clients=n, threshold=threshold, vector_length=1, neighbors=neighbors, malicious=True)
    identity, verify_keys = keys(n)
    spec = MaskingSpec(config, verify_keys)
    for min_sum in (n, n + 1, 0, -1):
        try:
            run = client_run(spec, 0, SID, np.zeros(1, np.uint64), identity=identity, min_sum=min_sum)
        except (ParameterError, ProtocolViolation):
            continue
        run.start()
    for corrupt in (0, n - 1, n, n + 5):
        try:
            ClientPolicy(num_clients=n, min_corrupt=corrupt, min_sum=n, min_neighbors=neighbors,
                         require_malicious=True).check(config)
        except ProtocolViolation:
            pass


def test_the_smaller_sum_bound_is_a_log_probability_at_every_small_parameter():
    for n in range(2, 10):
        for k in [None, *range(1, n - 1)]:
            for t in range(1, (n - 1 if k is None else k) + 1):
                for min_sum in range(0, n + 2):
                    for c in range(0, n + 2):
                        value = log2_smaller_sum(n, k, t, min_sum, c)
                        assert value == -math.inf or -1e6 < value <= 0.0, (n, k, t, min_sum, c, value)
