import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from secagg.crypto import shamir
from secagg.crypto.randomness import TestOnlySeededRandomness
from secagg.errors import CryptoError, ParameterError

P = shamir.FIELD_PRIME


class ScriptedRandomness:
    """Returns the given field elements as the next random words (for known-answer tests)."""

    def __init__(self, words):
        self.data = b"".join(int(w).to_bytes(4, "little") for w in words)

    def random_bytes(self, n):
        chunk, self.data = self.data[:n], self.data[n:]
        assert len(chunk) == n
        return chunk


def poly_eval(coefficients, x):
    """Pure-Python reference: sum c_j x^j mod p."""
    return sum(c * pow(x, j, P) for j, c in enumerate(coefficients)) % P


def test_known_answer_small_polynomial():
    # f(x) = 5 + 3x + 7x^2  ->  f(1)=15, f(2)=39, f(3)=77
    shares = shamir.share(np.array([5]), 3, [1, 2, 3], ScriptedRandomness([3, 7]))
    assert shares.ravel().tolist() == [15, 39, 77]
    assert shamir.reconstruct(np.array([[1, 2, 3]]), shares[None]).ravel().tolist() == [5]


def test_known_answer_wraps_mod_p():
    # f(x) = (p-1) + (p-2)x at x = 1, 5: (2p-3) mod p = p-3, (p-1 + 5(p-2)) mod p = p-11
    shares = shamir.share(np.array([P - 1]), 2, [1, 5], ScriptedRandomness([P - 2]))
    assert shares.ravel().tolist() == [P - 3, P - 11]


def test_known_answer_lagrange_coefficients():
    # at 0 for x = 1, 2, 3: (3, -3, 1) mod p
    assert shamir.lagrange_at_zero(np.array([[1, 2, 3]])).tolist() == [[3, P - 3, 1]]


@given(st.integers(1, 8), st.integers(0, 6), st.integers(1, 5), st.integers(0, 2**32))
def test_shares_match_reference_and_any_t_reconstruct(t, extra, limbs, seed):
    rng = TestOnlySeededRandomness(seed)
    secret = shamir.random_field_elements(rng, (limbs,))
    x = np.array(sorted(set(range(1, t + extra + 1))))
    words = shamir.random_field_elements(TestOnlySeededRandomness(seed).child(b"c"), (t - 1, limbs))
    shares = shamir.share(secret, t, x, ScriptedRandomness(words.ravel()))
    for i, xi in enumerate(x.tolist()):
        for limb in range(limbs):
            coefficients = [int(secret[limb])] + [int(w) for w in words[:, limb]]
            assert shares[i, limb] == poly_eval(coefficients, xi)
    for subset in itertools.islice(itertools.combinations(range(x.size), t), 5):
        idx = np.array(subset)
        assert np.array_equal(shamir.reconstruct(x[idx][None], shares[idx][None])[0], secret)


@pytest.mark.parametrize("secret", [0, 1, P - 1])
def test_t_minus_one_shares_look_uniform_whatever_the_secret(secret):
    # 20,000 independent 3-of-n sharings of one fixed secret (many limbs at once); the joint
    # distribution of the two shares held by x=1 and x=2 (low 4 bits each: 256 cells) must be
    # uniform: t-1 shares carry no information about the secret.
    sharings = 20_000
    shares = shamir.share(np.full(sharings, secret), 3, [1, 2, 3], TestOnlySeededRandomness(secret))
    cells = (shares[0] & 15) * 16 + (shares[1] & 15)
    counts = np.bincount(cells, minlength=256)
    chi2 = float(((counts - counts.mean()) ** 2 / counts.mean()).sum())
    assert chi2 < 400  # 255 degrees of freedom: p < 1e-6 beyond ~370


def test_batch_reconstruction_with_different_holder_sets():
    rng = TestOnlySeededRandomness(3)
    secrets = [bytes([i]) * 32 for i in range(4)]
    limbs = shamir.secrets_to_limbs(secrets)
    x = np.arange(1, 8)
    shares = np.stack([shamir.share(row, 4, x, rng) for row in limbs])  # (owners, holders, limbs)
    sets = np.array([[1, 2, 3, 4], [4, 5, 6, 7], [1, 3, 5, 7], [1, 2, 3, 4]])
    picked = np.stack([shares[o, sets[o] - 1] for o in range(4)])
    assert shamir.limbs_to_secrets(shamir.reconstruct(sets, picked)) == secrets


def test_secret_limb_round_trip_and_extremes():
    secrets = [bytes(32), b"\xff" * 32, bytes(range(32))]
    limbs = shamir.secrets_to_limbs(secrets)
    assert limbs.max() < 2**30 and limbs.shape == (3, 9)
    assert shamir.limbs_to_secrets(limbs) == secrets


def test_out_of_range_reconstruction_is_detected():
    limbs = np.zeros((1, 9), dtype=np.uint32)
    limbs[0, -1] = 1 << 16  # value >= 2^256
    with pytest.raises(CryptoError):
        shamir.limbs_to_secrets(limbs)
    limbs[0, -1] = 0
    limbs[0, 0] = 1 << 30
    with pytest.raises(CryptoError):
        shamir.limbs_to_secrets(limbs)


def test_random_field_elements_reject_p():
    # 0x7fffffff == p must be resampled; the scripted stream gives p first, then 9.
    assert shamir.random_field_elements(ScriptedRandomness([P, 9]), (1,)).tolist() == [9]


@pytest.mark.parametrize("call", [
    lambda: shamir.share(np.array([1]), 0, [1, 2], TestOnlySeededRandomness(1)),
    lambda: shamir.share(np.array([1]), 3, [1, 2], TestOnlySeededRandomness(1)),
    lambda: shamir.share(np.array([1]), 2, [0, 2], TestOnlySeededRandomness(1)),
    lambda: shamir.share(np.array([1]), 2, [2, 2], TestOnlySeededRandomness(1)),
    lambda: shamir.share(np.array([P]), 2, [1, 2], TestOnlySeededRandomness(1)),
    lambda: shamir.lagrange_at_zero(np.array([[1, 1]])),
    lambda: shamir.reconstruct(np.array([[1, 2]]), np.zeros((1, 3, 1))),
    lambda: shamir.secrets_to_limbs([b"short"]),
])
def test_bad_arguments_are_refused(call):
    with pytest.raises(ParameterError):
        call()


@given(st.integers(1, 40), st.integers(1, 300), st.integers(1, 12), st.integers(0, 2**32))
def test_mod_matmul_and_vandermonde_agree_with_galois(rows, inner, cols, seed):
    GF = shamir.field()
    gen = np.random.default_rng(seed)
    A = gen.integers(0, P, (rows, inner))
    A[0, :] = P - 1  # the largest operands
    B = gen.integers(0, P, (inner, cols))
    B[:, 0] = P - 1
    expected = np.add.reduce(GF(A)[:, :, None] * GF(B)[None, :, :], axis=1).view(np.ndarray)
    assert np.array_equal(shamir.mod_matmul(A, B), expected)
    x = gen.integers(1, P, rows)
    assert np.array_equal(shamir.vandermonde(x, inner), (GF(x)[:, None] ** np.arange(inner)).view(np.ndarray))


def test_sharing_agrees_with_galois_polynomial_evaluation():
    import galois

    GF = shamir.field()
    words = shamir.random_field_elements(TestOnlySeededRandomness(12), (6,))
    shares = shamir.share(np.array([42]), 7, np.arange(1, 20), ScriptedRandomness(words))
    poly = galois.Poly(list(reversed([42] + words.tolist())), field=GF)  # highest degree first
    assert shares[:, 0].tolist() == poly(GF(np.arange(1, 20))).tolist()
