import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from secagg.errors import CryptoError, ParameterError
from secagg.paillier import PackingScheme


@given(st.integers(1, 2**40), st.integers(1, 50), st.integers(1, 300), st.integers(0, 2**32))
def test_sums_of_packed_vectors_unpack_exactly(bound, summands, count, seed):
    try:
        scheme = PackingScheme(2048, bound, summands)
    except ParameterError:
        return  # slot wider than 8 bytes: refused by design
    rng = np.random.default_rng(seed)
    vectors = [rng.integers(-bound, bound + 1, count) for _ in range(summands)]
    packed = [scheme.pack(v) for v in vectors]
    sums = [sum(column) for column in zip(*packed)]  # what adding ciphertexts does to plaintexts
    assert all(s < 2**2046 for s in sums)  # below any 2048-bit modulus
    assert np.array_equal(scheme.unpack(sums, count, summands), np.sum(vectors, axis=0))


def test_slot_layout():
    scheme = PackingScheme(2048, 2**26, 10)  # sums up to 10 * 2^27 < 2^31: 4-byte slots
    assert scheme.slot_bytes == 4 and scheme.slots == 63
    assert scheme.plaintexts_for(100_001) == 1588


def test_out_of_bound_values_and_corrupt_sums_are_refused():
    scheme = PackingScheme(512, 1000, 3)
    with pytest.raises(ParameterError, match="bound"):
        scheme.pack(np.array([1001]))
    packed = scheme.pack(np.array([5, -5]))
    with pytest.raises(CryptoError):
        scheme.unpack([packed[0] + (1 << 511)], 2, 1)  # bits beyond the slots
    too_big = packed[0] + (3 * 2 * 1000) * (1 << (8 * scheme.slot_bytes))  # slot 1 above its bound
    with pytest.raises(CryptoError, match="bound"):
        scheme.unpack([too_big], 2, 1)
    with pytest.raises(ParameterError):
        scheme.unpack(packed, 2, 4)


@pytest.mark.parametrize("args", [(2048, 2**62, 4), (8, 10, 2), (2048, 0, 1), (2048, 5, 0)])
def test_impossible_schemes(args):
    with pytest.raises(ParameterError):
        PackingScheme(*args)


@pytest.mark.parametrize("slot_value", [2**64 - 1, 2**63, 2**63 - 1])
def test_a_full_width_slot_is_refused_not_wrapped(slot_value):
    # Issue 14, attack 6: 8-byte slots were read as int64, so 2^64 - 1 wrapped to -1 and passed the
    # bound check; every slot width is compared unsigned now.
    scheme = PackingScheme(2048, 2**58, 10)
    assert scheme.slot_bytes == 8
    with pytest.raises(CryptoError, match="bound"):
        scheme.unpack([slot_value], 1, 1)


@pytest.mark.parametrize("bound, summands", [(1, 1), (2**7, 2), (2**20, 10), (2**40, 100), (2**58, 10)])
def test_the_largest_legal_slot_decodes_and_one_more_is_refused_at_every_width(bound, summands):
    scheme = PackingScheme(2048, bound, summands)
    top = summands * 2 * bound
    assert list(scheme.unpack([top], 1, summands)) == [summands * bound]
    if top + 1 < 1 << (8 * scheme.slot_bytes):
        with pytest.raises(CryptoError):
            scheme.unpack([top + 1], 1, summands)
