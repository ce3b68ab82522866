import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given
from hypothesis import strategies as st

from secagg.crypto.prg import apply_masks, expand, keystream
from secagg.errors import ParameterError
from secagg.ring import Ring

KEY = bytes(range(32))


def ecb_counter_blocks(key, blocks):
    """Independent AES-CTR reference: AES-ECB of big-endian counters 0, 1, 2, ..."""
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return enc.update(b"".join(i.to_bytes(16, "big") for i in range(blocks)))


def test_keystream_known_answer():
    # AES-256(key 00..1f) of the zero block and of counter 1; frozen so the PRG never drifts.
    assert keystream(KEY, 32).hex() == "f29000b62a499fd0a9f39a6add2e7780f05d76ae4ab99fe5a6f69b3148c2363d"
    assert keystream(KEY, 64) == ecb_counter_blocks(KEY, 4)


@pytest.mark.parametrize("bits", [1, 5, 16, 31, 32, 33, 48, 63, 64])
def test_expand_maps_little_endian_words_mod_2_to_the_bits(bits):
    ring = Ring(bits)
    words = np.frombuffer(ecb_counter_blocks(KEY, 64), dtype=ring.dtype)[:100]
    expected = words & np.array(ring.mask, dtype=ring.dtype)
    assert np.array_equal(expand(KEY, 100, ring), expected)


@pytest.mark.parametrize("chunk_bytes", [16, 48, 4096, 1 << 18])
def test_chunking_does_not_change_the_stream(chunk_bytes):
    ring = Ring(32)
    assert np.array_equal(expand(KEY, 10_001, ring, chunk_bytes=chunk_bytes), expand(KEY, 10_001, ring))


@given(st.integers(1, 64), st.integers(0, 300), st.integers(0, 3), st.integers(0, 3))
def test_apply_masks_equals_sum_of_expansions(bits, length, adds, subs):
    ring = Ring(bits)
    seeds = [bytes([i]) * 32 for i in range(adds + subs)]
    target = np.arange(length, dtype=np.uint64).astype(ring.dtype) & np.array(ring.mask, dtype=ring.dtype)
    expected = target.astype(object)
    for i, seed in enumerate(seeds):
        sign = 1 if i < adds else -1
        expected = expected + sign * expand(seed, length, ring).astype(object)
    expected = np.array([int(v) % ring.modulus for v in expected], dtype=object)
    apply_masks(target, seeds[:adds], seeds[adds:], ring, chunk_bytes=64)
    assert [int(v) for v in target] == list(expected)


def test_masks_cancel():
    ring = Ring(17)
    x = np.arange(1000, dtype=np.uint32)
    y = x.copy()
    apply_masks(y, [KEY, b"\x01" * 32], [], ring)
    assert not np.array_equal(x, y)
    apply_masks(y, [], [KEY, b"\x01" * 32], ring)
    assert np.array_equal(x, y)


def test_expanded_elements_look_uniform():
    values = expand(KEY, 200_000, Ring(8))
    counts = np.bincount(values, minlength=256)
    chi2 = float(((counts - counts.mean()) ** 2 / counts.mean()).sum())
    assert chi2 < 400  # 255 degrees of freedom; p < 1e-6 beyond ~370


@pytest.mark.parametrize("kwargs", [{"seed": b"short"}, {"target": np.zeros(4, np.uint64)},
                                    {"target": np.zeros((2, 2), np.uint32)}, {"chunk_bytes": 10}])
def test_bad_arguments_are_refused(kwargs):
    args = {"seed": KEY, "target": np.zeros(4, np.uint32), "chunk_bytes": 64} | kwargs
    with pytest.raises(ParameterError):
        apply_masks(args["target"], [args["seed"]], [], Ring(32), chunk_bytes=args["chunk_bytes"])


def test_read_only_target_is_refused():
    target = np.zeros(4, np.uint32)
    target.flags.writeable = False
    with pytest.raises(ParameterError):
        apply_masks(target, [KEY], [], Ring(32))
