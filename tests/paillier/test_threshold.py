import math

import numpy as np
import pytest

phe = pytest.importorskip("phe")
gmpy2 = pytest.importorskip("gmpy2")

from secagg.errors import CryptoError, ParameterError  # noqa: E402
from secagg.paillier import (  # noqa: E402
    add_ciphertexts,
    combine_partial_decryptions,
    encrypt_packed,
    generate_threshold_keypair,
    partial_decrypt,
    precompute_obfuscators,
)
from secagg.paillier.threshold import _lagrange_times_delta, safe_prime  # noqa: E402

# Two small safe primes for known-answer tests: 1019 = 2*509 + 1, 1187 = 2*593 + 1.
P, Q = 1019, 1187


def test_known_answer_key_structure():
    public, shares = generate_threshold_keypair(5, 3, primes=(P, Q))
    n, m = P * Q, 509 * 593
    assert public.n == n == 1_209_553 and public.delta == 120
    # f(0) = d with d = 0 mod m and d = 1 mod N; reconstruct it from shares with the integer Lagrange
    lambdas = _lagrange_times_delta([1, 2, 3], 120)
    assert lambdas == [360, -360, 120]  # 120 * (2*3)/((2-1)(3-1)), ...
    delta_d = sum(l * s.share for l, s in zip(lambdas, shares[:3])) % (n * m)
    d = delta_d * pow(120, -1, n * m) % (n * m)
    assert d % m == 0 and d % n == 1


def test_known_answer_encryption_and_threshold_decryption():
    public, shares = generate_threshold_keypair(5, 3, primes=(P, Q))
    n, nsq = public.n, public.nsquare
    r = 5
    c = (1 + n * 42) * pow(r, n, nsq) % nsq  # Paillier with g = N + 1
    assert public.phe_key.raw_encrypt(42, r_value=r) == c  # same as python-paillier
    for subset in ([0, 1, 2], [4, 2, 0], [1, 3, 4]):
        partials = [partial_decrypt(shares[i], [c]) for i in subset]
        assert combine_partial_decryptions(public, partials) == [42]


@pytest.mark.parametrize("parties,threshold", [(1, 1), (3, 2), (5, 5), (7, 4)])
def test_random_keys_decrypt_sums_like_phe_private_key(parties, threshold):
    p, q = safe_prime(192), safe_prime(192)
    while q == p:
        q = safe_prime(192)
    public, shares = generate_threshold_keypair(parties, threshold, primes=(p, q))
    private = phe.paillier.PaillierPrivateKey(public.phe_key, p, q)
    rng = np.random.default_rng(parties)
    messages = [[int(v) for v in rng.integers(0, 2**40, 4)] for _ in range(3)]
    vectors = [encrypt_packed(public, msgs) for msgs in messages]
    total = add_ciphertexts(public, vectors)
    expected = [sum(col) % public.n for col in zip(*messages)]
    assert [private.raw_decrypt(c) for c in total] == expected  # independent decryption
    chosen = rng.permutation(parties)[:threshold]
    partials = [partial_decrypt(shares[i], total) for i in chosen]
    assert combine_partial_decryptions(public, partials) == expected


def test_fewer_than_t_parties_cannot_decrypt():
    public, shares = generate_threshold_keypair(5, 3, primes=(P, Q))
    c = encrypt_packed(public, [777])
    two = [partial_decrypt(shares[i], c) for i in (0, 1)]
    with pytest.raises(ParameterError, match="threshold is 3"):
        combine_partial_decryptions(public, two)
    # Forcing a 2-party combination (as if t were 2) does not give the plaintext.
    forced = type(public)(public.n, 2, public.parties, public.delta)
    try:
        assert combine_partial_decryptions(forced, two) != [777]
    except CryptoError:
        pass


def test_a_wrong_partial_decryption_is_detected():
    p, q = safe_prime(256), safe_prime(256)
    public, shares = generate_threshold_keypair(4, 3, primes=(p, q))
    c = encrypt_packed(public, [5])
    partials = [partial_decrypt(shares[i], c) for i in range(3)]
    bad = type(partials[0][0])(partials[0][0].index, partials[0][0].value * 2 % public.nsquare)
    with pytest.raises(CryptoError, match="inconsistent"):
        combine_partial_decryptions(public, [[bad], partials[1], partials[2]])


@pytest.mark.parametrize("value", [0, -1, P * Q * P * Q, P, "abc", 1.5])
def test_ciphertexts_out_of_range_are_refused(value):
    public, shares = generate_threshold_keypair(3, 2, primes=(P, Q))
    with pytest.raises(CryptoError):
        partial_decrypt(shares[0], [value])
    with pytest.raises(CryptoError):
        add_ciphertexts(public, [[value]])


def test_obfuscators_are_fresh_and_consumed():
    public, _ = generate_threshold_keypair(3, 2, primes=(P, Q))
    pool = precompute_obfuscators(public, 4)
    assert len(set(pool)) == 4
    a = encrypt_packed(public, [1, 1], pool)
    assert len(pool) == 2 and a[0] != a[1]
    with pytest.raises(ParameterError, match="obfuscators"):
        encrypt_packed(public, [1, 2, 3], pool)


@pytest.mark.parametrize("kwargs", [{"parties": 0, "threshold": 1}, {"parties": 3, "threshold": 4},
                                    {"parties": 3, "threshold": 2, "key_bits": 100},
                                    {"parties": 3, "threshold": 2, "primes": (1019, 1021)},
                                    {"parties": 3, "threshold": 2, "primes": (1019, 1019)}])
def test_bad_setup_is_refused(kwargs):
    with pytest.raises(ParameterError):
        generate_threshold_keypair(**kwargs)


def test_safe_primes_are_safe():
    p = safe_prime(128)
    assert p.bit_length() == 128 and gmpy2.is_prime(p) and gmpy2.is_prime((p - 1) // 2)
    assert math.gcd(p, 2) == 1


def test_the_product_of_two_safe_primes_has_exactly_twice_their_bits():
    # Regression: with only the top bit set a 2k-bit key came out 2k-1 bits about a third of the
    # time and load_public_key then refused the key files keygen had just written.
    for _ in range(40):
        assert (safe_prime(24) * safe_prime(24)).bit_length() == 48


def test_a_shifted_partial_decryption_is_caught_by_the_cross_check():
    # Multiplying a partial by (1 + N)^x passes the L-function check and would shift the plaintext;
    # with t + 1 parties the two threshold subsets disagree.
    p, q = safe_prime(256), safe_prime(256)
    public, shares = generate_threshold_keypair(5, 3, primes=(p, q))
    c = encrypt_packed(public, [1000])
    partials = [partial_decrypt(shares[i], c) for i in range(4)]
    honest = combine_partial_decryptions(public, partials)
    assert honest == [1000]
    cheat = partials[1][0]
    shifted = type(cheat)(cheat.index, cheat.value * pow(1 + public.n, 7, public.nsquare) % public.nsquare)
    forged = [partials[0], [shifted], partials[2], partials[3]]
    with pytest.raises(CryptoError, match="disagree"):
        combine_partial_decryptions(public, forged)
    # with exactly t parties the shift would go unnoticed: why the aggregator asks t + 1 when it can
    assert combine_partial_decryptions(public, forged[:3]) != [1000]


def test_short_exponent_obfuscators_are_n_th_residues_from_the_fixed_base_table():
    from secagg.paillier.vector import fixed_base_power, short_exponent_bits

    p, q = safe_prime(192), safe_prime(192)
    while q == p:
        q = safe_prime(192)
    public, shares = generate_threshold_keypair(3, 2, primes=(p, q))
    n, nsq = public.n, public.nsquare
    base = public.obfuscation_base
    # the base is h^N for h = -x^2: an N-th residue, which the private key maps to 1 (encrypts 0)
    private = phe.paillier.PaillierPrivateKey(public.phe_key, p, q)
    assert private.raw_decrypt(base) == 0
    rng = np.random.default_rng(0)
    for bits in (1, 7, 8, 9, 100, short_exponent_bits(public)):
        a = int.from_bytes(rng.bytes(128), "little") % (1 << bits)
        assert fixed_base_power(public, a) == pow(base, a, nsq)
    with pytest.raises(ParameterError):
        fixed_base_power(public, 1 << short_exponent_bits(public))
    # encryptions with short-exponent obfuscators decrypt (threshold and ordinary) like any other
    c = encrypt_packed(public, [7, 0, n - 1])
    assert [private.raw_decrypt(x) for x in c] == [7, 0, n - 1]
    assert combine_partial_decryptions(public, [partial_decrypt(s, c) for s in shares[:2]]) == [7, 0, n - 1]


def test_textbook_obfuscators_remain_available():
    public, shares = generate_threshold_keypair(3, 2, primes=(P, Q), short_exponent=False)
    assert public.obfuscation_base is None
    c = encrypt_packed(public, [11, 12])
    assert combine_partial_decryptions(public, [partial_decrypt(s, c) for s in shares[1:]]) == [11, 12]
    # a textbook key has no fixed base: the table refuses it by name (it was a TypeError from gmpy2)
    from secagg.paillier.vector import fixed_base_power
    with pytest.raises(ParameterError, match="textbook key"):
        fixed_base_power(public, 1)
