"""Review 13, attack family 2b: a masking session weaker than the participant's own.

Claim 15 (docs/security.md): "the session must be at least as strong as the one its own
aggregator would run (threshold, neighbours, malicious mode)". The participant's policy compares
the three numbers one by one (threshold >= its own, neighbours >= its own, malicious if its own
is), then rebuilds the announced SecAggConfig under the *coordinator's* declared threat model.
But in malicious mode strength is not monotone in the neighbours: the split bound is 2t > h + c,
so more holders at the same threshold tolerate fewer corrupt clients. A coordinator announcing
the complete graph (or a larger K) at a threshold the participant's policy accepts, with
``corrupt_clients=0`` declared, passes every check, and with the corrupt clients the participant's
own configuration declared it tolerates, the split survivor list exposes an honest input.
"""

from __future__ import annotations

import numpy as np
import pytest

from secagg.aggregation.masking import MaskingAggregator
from secagg.errors import ProtocolViolation
from secagg.fedavg import FedAvg, NumpyLogisticRegression
from secagg.fedavg.network import FedAvgClient, FedAvgTask
from secagg.protocol.config import SecAggConfig
from secagg.transport.sessions import client_spec, config_to_header, session_cohort
from tests.protocol.adversary import Coalition, Strategy


def job(n_neighbors, threshold=None, **options):
    return FedAvg(NumpyLogisticRegression(13), rounds=2, max_weight=300.0, seed=0,
                  aggregator=MaskingAggregator(neighbors=n_neighbors, threshold=threshold, malicious=True, **options))


def participant(make, n):
    X = np.random.default_rng(0).normal(size=(40, 13))
    return FedAvgClient(make(), 0, X, (X[:, 0] > 0).astype(np.int64), num_clients=n)


def announce(make, n, config):
    """The coordinator's SESSION header for round 0, its masking config replaced by ``config``."""
    plan = FedAvgTask(make(), n).next_session()
    return {**plan.header, "session_id": "ab" * 16, "protocol": "masking", "config": config_to_header(config),
            "cohort": list(range(n))}, plan.blob


def accepted(client, header, blob, n):
    """Every check the network participant makes before it trains (NetworkClient._one_stream, then
    FedAvgClient.prepare); the spec it would run, or ProtocolViolation."""
    cohort, _ = session_cohort(header, client.client_id, n)
    spec = client_spec(header, cohort=cohort)
    policy = client.policy(n)
    policy.check_cohort(cohort)
    policy.check(spec.config)
    assert client.prepare(spec, header, blob) is not None
    return spec


def like(config, **changes):
    values = dict(num_clients=config.num_clients, threshold=config.threshold, vector_length=config.vector_length,
                  modulus_bits=config.modulus_bits, neighbors=config.neighbors, malicious=config.malicious,
                  corrupt_clients=config.threat_model.corrupt_clients, dropout_fraction=config.dropout_fraction)
    return SecAggConfig(**{**values, **changes})


# ----------------------------------------------------------------------------- what is refused

def test_a_lower_threshold_fewer_neighbours_or_the_honest_mode_are_refused():
    n = 100
    make = lambda: job("auto")  # noqa: E731 - the library's own choice: K = 60, t = 33, c = 5
    client = participant(make, n)
    own = client.expected_session().config
    assert (own.neighbors, own.threshold, own.threat_model.corrupt_clients) == (60, 33, 5)
    # each with corrupt_clients=0 declared, so that the core's bounds do not refuse it first
    for weaker, match in ((dict(threshold=32), "threshold 32"), (dict(neighbors=58), "at least 60"),
                          (dict(malicious=False), "malicious-server mode")):
        header, blob = announce(make, n, like(own, corrupt_clients=0, **weaker))
        with pytest.raises(ProtocolViolation, match=match):
            accepted(client, header, blob, n)
    assert client.rounds_trained == 0


# ----------------------------------------------------------------------------- what is not

def test_an_announced_session_tolerates_the_corrupt_clients_the_participants_own_session_tolerates():
    n = 100
    make = lambda: job("auto")  # noqa: E731
    client = participant(make, n)
    own = client.expected_session().config
    announced = like(own, neighbors=None, threshold=50, corrupt_clients=0)  # 2t > n - 1 + 0: accepted by the core
    header, blob = announce(make, n, announced)
    try:
        spec = accepted(client, header, blob, n)
    except ProtocolViolation:
        return  # refused: the attack fails
    assert spec.config.threat_model.tolerated_corrupt >= own.threat_model.corrupt_clients, (
        f"the participant runs a session tolerating {spec.config.threat_model.tolerated_corrupt} corrupt clients; "
        f"its own tolerates {own.threat_model.corrupt_clients}")


def test_the_session_a_participant_accepts_resists_the_split_with_its_own_number_of_corrupt_clients():
    n = 30
    make = lambda: job(25, 14, dropout_fraction=0.0, corrupt_fraction=0.05)  # noqa: E731
    client = participant(make, n)
    own = client.expected_session().config
    assert (own.neighbors, own.threshold, own.threat_model.corrupt_clients) == (25, 14, 2)
    # the participant's own session resists this coalition's split
    assert Coalition(own, corrupt={1, 2}, victim=0, seed=3).run(Strategy(split=True)).exposed() == []
    header, blob = announce(make, n, like(own, neighbors=None, threshold=15, corrupt_clients=0))
    try:
        spec = accepted(client, header, blob, n)
    except ProtocolViolation:
        return  # refused: the attack fails
    coalition = Coalition(spec.config, corrupt={1, 2}, victim=0, seed=3).run(Strategy(split=True))
    assert coalition.exposed() == [], (f"the coordinator with clients 1 and 2 recovers client 0's input in a session "
                                       f"client 0 accepted ({spec.config.threat_model}); refusals: {coalition.refused}")
