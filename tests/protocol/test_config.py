import pytest

from secagg import ParameterError, SecAggConfig


def test_defaults_and_derived_values():
    cfg = SecAggConfig(num_clients=10, threshold=7, vector_length=100)
    assert cfg.modulus_bits == 32 and cfg.neighbors is None and not cfg.malicious
    assert cfg.holders_per_client == 10 and not cfg.is_sparse
    sparse = SecAggConfig(num_clients=10, threshold=3, vector_length=5, neighbors=4)
    assert sparse.holders_per_client == 4 and sparse.is_sparse


@pytest.mark.parametrize("kwargs,match", [
    ({"num_clients": 1}, "num_clients"),
    ({"num_clients": 2.5}, "integer"),
    ({"threshold": 0}, "threshold"),
    ({"threshold": 11}, "threshold"),
    ({"vector_length": 0}, "vector_length"),
    ({"modulus_bits": 65}, "modulus_bits"),
    ({"modulus_bits": 0}, "modulus_bits"),
    ({"neighbors": 10}, "neighbors"),
    ({"neighbors": 0}, "neighbors"),
    ({"neighbors": 4, "threshold": 5}, "threshold"),
    ({"num_clients": 9, "neighbors": 3, "threshold": 2}, "regular"),
    ({"malicious": 1}, "malicious"),
    ({"threshold": True}, "integer"),
])
def test_invalid_configs_are_refused(kwargs, match):
    args = {"num_clients": 10, "threshold": 3, "vector_length": 4} | kwargs
    with pytest.raises(ParameterError, match=match):
        SecAggConfig(**args)


def test_config_is_frozen():
    cfg = SecAggConfig(num_clients=3, threshold=2, vector_length=1)
    with pytest.raises(AttributeError):
        cfg.threshold = 1
