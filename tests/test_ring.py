import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from secagg.errors import ParameterError
from secagg.ring import Ring


@pytest.mark.parametrize("bits,dtype", [(1, np.uint32), (32, np.uint32), (33, np.uint64), (64, np.uint64)])
def test_storage_dtype(bits, dtype):
    assert Ring(bits).dtype == np.dtype(dtype)


@pytest.mark.parametrize("bits", [0, 65, -1, 1.5, True, "32"])
def test_bad_bits_are_refused(bits):
    with pytest.raises(ParameterError):
        Ring(bits)


@given(st.integers(1, 64), st.lists(st.lists(st.integers(0, 2**64 - 1), min_size=3, max_size=3), min_size=1, max_size=6))
def test_sum_is_exact_mod_2_to_the_bits(bits, rows):
    ring = Ring(bits)
    vectors = [ring.element([v % ring.modulus for v in row]) for row in rows]
    expected = [sum(row[i] % ring.modulus for row in rows) % ring.modulus for i in range(3)]
    assert [int(v) for v in ring.sum(vectors)] == expected


def test_element_accepts_python_ints_above_2_63():
    ring = Ring(64)
    assert int(ring.element([2**64 - 1, 0])[0]) == 2**64 - 1


@pytest.mark.parametrize("values", [[-1, 2], [2**32], [1.5, 2.0], [[1, 2]], "abc", [True, False], [None], [2**70]])
def test_element_refuses_values_outside_the_ring(values):
    with pytest.raises(ParameterError):
        Ring(32).element(values)


def test_element_checks_length():
    with pytest.raises(ParameterError, match="length"):
        Ring(8).element([1, 2, 3], length=4)
