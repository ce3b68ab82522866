import numpy as np
import pytest

from secagg.dp.rotation import padded_dimension, random_signs, rotate, unrotate
from secagg.errors import ParameterError


def test_rotation_is_the_signed_normalised_hadamard_matrix():
    linalg = pytest.importorskip("scipy.linalg")
    signs = random_signs(bytes(range(32)), 16)
    x = np.random.default_rng(0).normal(size=(3, 13))
    padded = np.zeros((3, 16))
    padded[:, :13] = x
    expected = padded @ (linalg.hadamard(16) @ np.diag(signs)).T / 4
    assert np.allclose(rotate(x, signs), expected)


def test_unrotate_inverts_and_norms_are_kept():
    rng = np.random.default_rng(1)
    signs = random_signs(rng.bytes(32), 128)
    x = rng.normal(size=(5, 100))
    y = rotate(x, signs)
    assert np.allclose(np.linalg.norm(y, axis=1), np.linalg.norm(x, axis=1))
    assert np.allclose(unrotate(y, signs, 100), x)
    assert np.allclose(unrotate(rotate(x[0], signs), signs, 100), x[0])


def test_rotation_spreads_a_spike():
    signs = random_signs(bytes(32), 1024)
    spike = np.zeros(1000)
    spike[7] = 1.0
    assert np.allclose(np.abs(rotate(spike, signs)), 1 / 32)


def test_signs_are_public_functions_of_the_seed():
    a, b = random_signs(b"s" * 32, 64), random_signs(b"s" * 32, 64)
    assert np.array_equal(a, b) and set(np.unique(a)) == {-1.0, 1.0}
    assert not np.array_equal(a, random_signs(b"t" * 32, 64))


def test_bad_shapes():
    assert padded_dimension(1) == 1 and padded_dimension(5) == 8 and padded_dimension(8) == 8
    assert padded_dimension(np.int64(5)) == 8
    for bad in (0, -3, 2.5, "4", True, None):
        with pytest.raises(ParameterError, match="positive int"):
            padded_dimension(bad)
    with pytest.raises(ParameterError, match="signs"):
        rotate(np.zeros(4), None)
    with pytest.raises(ParameterError, match="signs"):
        unrotate(np.zeros(4), [1.0, -1.0, 1.0, 1.0], 4)
    with pytest.raises(ParameterError, match="power-of-two"):
        rotate(np.zeros(9), np.ones(8))
    with pytest.raises(ParameterError, match="length"):
        unrotate(np.zeros(9), np.ones(8), 5)
