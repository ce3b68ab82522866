import math

import pytest

from secagg import ParameterError, SecAggConfig


def test_defaults_and_derived_values():
    cfg = SecAggConfig(num_clients=10, threshold=7, vector_length=100)
    assert cfg.modulus_bits == 32 and cfg.neighbors is None and not cfg.malicious
    assert cfg.holders_per_client == 9 and not cfg.is_sparse  # a client never holds its own shares
    assert cfg.threat_model.tolerated_corrupt == 6 and cfg.threat_model.corrupt_clients == 6
    sparse = SecAggConfig(num_clients=40, threshold=3, vector_length=5, neighbors=6)
    assert sparse.holders_per_client == 6 and sparse.is_sparse
    assert sparse.threat_model.privacy_failure_log2 <= -40


@pytest.mark.parametrize("kwargs,match", [
    ({"num_clients": 1}, "num_clients"),
    ({"num_clients": 2.5}, "integer"),
    ({"threshold": 0}, "threshold"),
    ({"threshold": 10}, "threshold must be in 1..9"),
    ({"vector_length": 0}, "vector_length"),
    ({"modulus_bits": 65}, "modulus_bits"),
    ({"modulus_bits": 0}, "modulus_bits"),
    ({"neighbors": 9}, "neighbors"),
    ({"neighbors": 0}, "neighbors"),
    ({"neighbors": 4, "threshold": 5}, "threshold"),
    ({"malicious": 1}, "malicious"),
    ({"threshold": True}, "integer"),
    ({"corrupt_clients": 10}, "corrupt_clients"),
    ({"corrupt_clients": -1}, "corrupt_clients"),
    ({"dropout_fraction": 1.0}, "dropout_fraction"),
    ({"security_bits": 0}, "security_bits"),
])
def test_invalid_configs_are_refused(kwargs, match):
    args = {"num_clients": 10, "threshold": 3, "vector_length": 4} | kwargs
    with pytest.raises(ParameterError, match=match):
        SecAggConfig(**args)


@pytest.mark.parametrize("n, t, c, ok", [
    (10, 3, 2, True), (10, 3, 3, False),  # honest-but-curious: t > c
    (11, 6, 5, True), (11, 6, 6, False),
])
def test_honest_but_curious_bound_is_t_greater_than_c(n, t, c, ok):
    build = lambda: SecAggConfig(num_clients=n, threshold=t, vector_length=1, corrupt_clients=c)  # noqa: E731
    if ok:
        assert build().threat_model.corrupt_clients == c
    else:
        with pytest.raises(ParameterError, match="t > c"):
            build()


@pytest.mark.parametrize("n, t", [(100, 1), (100, 2), (100, 49), (10, 4), (11, 5)])
def test_malicious_mode_refuses_thresholds_the_coordinator_could_split(n, t):
    # 2t > (n - 1) + c even with no corrupt client at all: below it the coordinator can tell half
    # the holders a client survived and the other half it dropped, and collect both kinds
    with pytest.raises(ParameterError, match=r"2t > \(n - 1\) \+ c"):
        SecAggConfig(num_clients=n, threshold=t, vector_length=1, malicious=True)


def test_malicious_bound_with_corrupt_clients_and_liveness():
    cfg = SecAggConfig(num_clients=100, threshold=60, vector_length=1, malicious=True, corrupt_clients=20)
    assert cfg.threat_model.tolerated_corrupt == 20  # 2 * 60 > 99 + c  <=>  c <= 20
    with pytest.raises(ParameterError, match=r"2t > \(n - 1\) \+ c"):
        SecAggConfig(num_clients=100, threshold=60, vector_length=1, malicious=True, corrupt_clients=21)
    with pytest.raises(ParameterError, match="cannot be met"):  # 20 silent corrupt + 10 dropouts
        SecAggConfig(num_clients=100, threshold=75, vector_length=1, malicious=True, corrupt_clients=20,
                     dropout_fraction=0.1)


def test_sparse_bound_is_the_hypergeometric_tail():
    cfg = SecAggConfig(num_clients=1000, threshold=20, vector_length=1, neighbors=40, corrupt_clients=50)
    model = cfg.threat_model
    tail = sum(math.comb(50, j) * math.comb(949, 40 - j) for j in range(20, 41)) / math.comb(999, 40)
    assert model.privacy_failure_log2 >= math.log2(950 * tail) - 1e-6 and model.privacy_failure_log2 <= -40
    with pytest.raises(ParameterError, match="SecAgg\\+"):
        SecAggConfig(num_clients=1000, threshold=8, vector_length=1, neighbors=40, corrupt_clients=100)


def test_unsafe_opt_out_is_loud():
    with pytest.warns(UserWarning, match="protects no input"):
        cfg = SecAggConfig(num_clients=100, threshold=2, vector_length=1, malicious=True, unsafe_skip_bounds=True)
    assert cfg.threat_model is None


def test_config_is_frozen():
    cfg = SecAggConfig(num_clients=3, threshold=2, vector_length=1)
    with pytest.raises(AttributeError):
        cfg.threshold = 1
