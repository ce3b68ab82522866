"""The Paillier path: packed fixed-point plaintexts and threshold decryption among the parties.

Needs the ``paillier`` extra (``pip install 'secagg[paillier]'``: python-paillier and gmpy2); both
are imported only when a key is generated or used.
"""

from __future__ import annotations


def _phe():
    try:
        import phe
    except ImportError:
        raise ImportError("the Paillier path needs python-paillier: pip install 'secagg[paillier]'") from None
    return phe


def _gmpy2():
    try:
        import gmpy2
    except ImportError:
        raise ImportError("the Paillier path needs gmpy2: pip install 'secagg[paillier]'") from None
    return gmpy2


from secagg.paillier.packing import PackingScheme  # noqa: E402
from secagg.paillier.threshold import (  # noqa: E402
    KeyShare,
    PartialDecryption,
    ThresholdPublicKey,
    combine_partial_decryptions,
    generate_threshold_keypair,
    partial_decrypt,
)
from secagg.paillier.vector import add_ciphertexts, encrypt_packed, precompute_obfuscators  # noqa: E402

__all__ = [
    "KeyShare",
    "PackingScheme",
    "PartialDecryption",
    "ThresholdPublicKey",
    "add_ciphertexts",
    "combine_partial_decryptions",
    "encrypt_packed",
    "generate_threshold_keypair",
    "partial_decrypt",
    "precompute_obfuscators",
]
