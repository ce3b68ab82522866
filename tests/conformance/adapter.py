"""The small interface the conformance suite drives, and secagg's own implementation of it.

Two ways to plug an implementation in (docs/conformance.md):

* in process (Python): ``SECAGG_IMPLEMENTATION=your.module:factory``, where ``factory`` is a
  zero-argument callable returning an object with the methods of :class:`Implementation`;
* any language: ``SECAGG_HARNESS_COMMAND="your-program args"``, a program speaking the JSON-lines
  protocol of :mod:`tests.conformance.jsonl` on its stdin and stdout.

Messages are bytes, configs are the transcript's ``config`` dict, randomness is the exact bytes a
client must consume (spec section 7). This is the only module of the suite that imports secagg
(besides the mutation tooling, which mutates it).
"""

from __future__ import annotations

import importlib
import os
from typing import Protocol

import numpy as np


class Client(Protocol):
    def start(self) -> bytes: ...
    def handle(self, data: bytes) -> bytes | None: ...


class Server(Protocol):
    def receive(self, client_id: int, data: bytes) -> dict[int, bytes]: ...
    def close_round(self) -> dict[int, bytes]: ...
    def abort(self, reason: str) -> dict[int, bytes]: ...  # the driver gives up: the AbortNotices to send
    def abort_notices(self) -> dict[int, bytes]: ...  # after any abort: the AbortNotices to send ({} before)
    def outcome(self) -> tuple[list[int], list[int]] | None: ...  # (survivors, aggregate) once complete
    def flagged(self) -> tuple[list[list[int]], list[int]]: ...  # (bundle reports [reporter, sender], misbehaving ids)


class Implementation(Protocol):
    name: str

    def hkdf(self, ikm: bytes, label: str, context: bytes, length: int) -> bytes: ...
    def prg(self, seed: bytes, count: int, modulus_bits: int) -> list[int]: ...
    def shamir_share(self, limbs: list[int], threshold: int, holders: list[int], randomness: bytes) -> dict[int, list[int]]: ...
    def shamir_reconstruct(self, holders: list[int], shares: list[list[int]]) -> list[int]: ...
    def reencode(self, data: bytes) -> bytes: ...
    def draw_holders(self, client: int, num_clients: int, count: int, randomness: bytes) -> list[int]: ...
    def transcript_tree(self, advertise_keys: list[bytes]) -> tuple[bytes, list[list[bytes]]]: ...  # root, paths
    def identity_public_key(self, seed: bytes) -> bytes: ...  # Ed25519 public key of a 32-byte private seed
    def new_client(self, config: dict, client_id: int, session_id: bytes, inputs: list[int], randomness: bytes,
                   identity_seed: bytes | None, verify_keys: dict[int, bytes] | None) -> Client: ...
    def new_server(self, config: dict, session_id: bytes, verify_keys: dict[int, bytes] | None) -> Server: ...
    def error_kind(self, error: BaseException) -> str | None:
        """'malformed', 'violation' or 'abort' for the implementation's typed errors, else None."""


class ReplayRandomness:
    """Hands out exactly the recorded bytes, in order; asking for more is an error."""

    def __init__(self, data: bytes) -> None:
        self.data = bytes(data)
        self.position = 0

    def random_bytes(self, n: int) -> bytes:
        if self.position + n > len(self.data):
            raise AssertionError(f"implementation asked for {n} random bytes beyond the {len(self.data)} recorded")
        chunk = self.data[self.position:self.position + n]
        self.position += n
        return chunk

    @property
    def exhausted(self) -> bool:
        return self.position == len(self.data)


class _SecaggServer:
    """secagg's ServerSession behind the adapter's Server interface."""

    def __init__(self, session) -> None:
        self.session = session

    def receive(self, client_id, data):
        return self.session.receive(client_id, data)

    def close_round(self):
        return self.session.close_round()

    def abort(self, reason):
        return self.session.abort(reason)

    def abort_notices(self):
        return dict(self.session.abort_notices)

    def outcome(self):
        result = self.session.result
        return None if result is None else (result.survivors, [int(v) for v in result.aggregate])

    def flagged(self):
        return [list(p) for p in self.session.reports], sorted(self.session.misbehaving)


class SecaggImplementation:
    """secagg itself behind the adapter interface."""

    name = "secagg"

    def __init__(self) -> None:
        import secagg
        from secagg.crypto import shamir
        from secagg.crypto.keys import hkdf
        from secagg.crypto.prg import expand
        from secagg.protocol.messages import decode_message

        self._secagg, self._shamir, self._hkdf, self._expand, self._decode = secagg, shamir, hkdf, expand, decode_message

    def hkdf(self, ikm, label, context, length):
        return self._hkdf(ikm, label.encode(), context, length)

    def prg(self, seed, count, modulus_bits):
        return [int(v) for v in self._expand(seed, count, self._secagg.Ring(modulus_bits))]

    def shamir_share(self, limbs, threshold, holders, randomness):
        source = ReplayRandomness(randomness)
        shares = self._shamir.share(np.array(limbs), threshold, np.array(holders) + 1, source)
        if not source.exhausted:
            raise AssertionError("the sharing left recorded randomness unused")
        return {h: [int(v) for v in row] for h, row in zip(holders, shares)}

    def shamir_reconstruct(self, holders, shares):
        x = np.array(holders)[None] + 1
        return [int(v) for v in self._shamir.reconstruct(x, np.array(shares, dtype=np.int64)[None])[0]]

    def reencode(self, data):
        return self._decode(data).encode()

    def draw_holders(self, client, num_clients, count, randomness):
        from secagg.protocol.graph import draw_holders

        source = ReplayRandomness(randomness)
        holders = [int(v) for v in draw_holders(client, num_clients, count, source)]
        if not source.exhausted:
            raise AssertionError("the draw left recorded randomness unused")
        return holders

    def transcript_tree(self, advertise_keys):
        from secagg.protocol import derivation

        tree = derivation.TranscriptTree([derivation.transcript_leaf(m) for m in advertise_keys])
        return tree.root, [list(tree.transcript(i).path) for i in range(len(advertise_keys))]

    def _config(self, config):
        return self._secagg.SecAggConfig(**config)

    def _identity(self, seed):
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        from secagg.crypto.signatures import IdentityKey

        return IdentityKey(Ed25519PrivateKey.from_private_bytes(seed))

    def identity_public_key(self, seed):
        return self._identity(seed).public_bytes

    def new_client(self, config, client_id, session_id, inputs, randomness, identity_seed, verify_keys):
        return self._secagg.ClientSession(self._config(config), client_id, session_id, inputs,
                                          rng=ReplayRandomness(randomness),
                                          identity=self._identity(identity_seed) if identity_seed else None,
                                          verify_keys=verify_keys)

    def new_server(self, config, session_id, verify_keys):
        return _SecaggServer(self._secagg.ServerSession(self._config(config), session_id, verify_keys=verify_keys))

    def error_kind(self, error):
        from secagg.errors import AbortError, MalformedMessage, ProtocolViolation

        if isinstance(error, MalformedMessage):
            return "malformed"
        if isinstance(error, ProtocolViolation):
            return "violation"
        if isinstance(error, AbortError):
            return "abort"
        return None


def load_in_process(target: str | None = None) -> Implementation:
    """``module:factory`` (a zero-argument callable; ``:implementation`` if omitted), or secagg."""
    target = target if target is not None else os.environ.get("SECAGG_IMPLEMENTATION")
    if not target:
        return SecaggImplementation()
    module_name, _, factory = target.partition(":")
    return getattr(importlib.import_module(module_name), factory or "implementation")()
