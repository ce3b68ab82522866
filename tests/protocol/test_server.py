"""Every refusal and abort rule of the server."""

import dataclasses

import numpy as np
import pytest

from secagg.errors import AbortError, MalformedMessage, ParameterError, ProtocolViolation, SessionStateError
from secagg.protocol.messages import (
    AdvertiseKeys,
    ConsistencySignature,
    MaskedInput,
    ShareKeys,
    UnmaskingShares,
    decode_message,
)
from secagg.protocol.server import ServerSession, ServerState
from tests.harness import SESSION, Harness


def refused(server, client_id, data, error=ProtocolViolation, match=None):
    """The server refuses ``data`` with ``error``; nothing about the round changes."""
    state, pending = server.state, server.pending_clients
    with pytest.raises(error, match=match) as info:
        server.receive(client_id, data)
    assert server.state is state and server.pending_clients == pending
    return info.value


def run_to_end(h):
    while h.server.state not in (ServerState.COMPLETED, ServerState.ABORTED):
        h.step()
    result = h.server.result
    assert np.array_equal(result.aggregate, h.expected_sum(result.survivors))
    return result


def test_malformed_bytes_name_the_sender():
    h = Harness()
    assert refused(h.server, 3, b"\x00" * 40, MalformedMessage).party == 3


def test_sender_mismatch_foreign_session_and_unknown_client():
    h = Harness()
    advert = decode_message(h.clients[1].start())
    refused(h.server, 2, advert.encode(), match="claims to come from client 1")
    refused(h.server, 1, dataclasses.replace(advert, session_id=b"\x01" * 16).encode(), match="another session")
    stranger = dataclasses.replace(advert, sender=99)
    refused(h.server, 99, stranger.encode(), match="unknown client 99")


def test_wrong_round_replay_and_duplicates_are_refused():
    h = Harness()
    h.start()
    adverts = dict(h.last_replies)
    # a replayed round-0 message during round 1
    refused(h.server, 0, adverts[0], match="during round share_keys")
    h.step()  # share keys -> masked input
    shares = dict(h.last_replies)
    refused(h.server, 0, shares[0], match="during round masked_input")
    reply = h.clients[0].handle(h.inbox.pop(0))
    assert h.server.receive(0, reply) == {}
    refused(h.server, 0, reply, match="second message")
    run_to_end(h)


def test_client_dropped_earlier_cannot_rejoin():
    h = Harness(n=5, t=3)
    h.start(skip={4})
    refused(h.server, 4, h.clients[4].start(), match="sent AdvertiseKeys during round share_keys")
    refused(h.server, 4, ShareKeys(SESSION, 4, bytes(32), [], np.zeros((0, 96), np.uint8)).encode(),
            match="not part of round share_keys")
    run_to_end(h)


def test_masked_input_of_wrong_length_or_ring_is_refused():
    h = Harness(n=5, t=3, m=8, bits=20)
    h.run_until(ServerState.MASKED_INPUT)
    refused(h.server, 0, MaskedInput(SESSION, 0, 20, np.zeros(7, np.uint32)).encode(), match="length 7")
    refused(h.server, 0, MaskedInput(SESSION, 0, 21, np.zeros(8, np.uint32)).encode(), match="Z_2\\^21")
    out_of_range = bytearray(MaskedInput(SESSION, 0, 20, np.zeros(8, np.uint32)).encode())
    out_of_range[-5] = 0xFF  # the last value's top byte (a u32 count of reported bundles follows)
    refused(h.server, 0, bytes(out_of_range), MalformedMessage, match="values >= 2\\*\\*20")
    run_to_end(h)


def test_share_keys_for_the_wrong_holders_are_refused():
    h = Harness(n=5, t=3)
    h.run_until(ServerState.SHARE_KEYS)
    honest = decode_message(h.clients[0].handle(h.inbox.pop(0)))
    fewer = dataclasses.replace(honest, peers=honest.peers[:-1], ciphertexts=honest.ciphertexts[:-1])
    refused(h.server, 0, fewer.encode(), match="other than its holders")
    to_self = dataclasses.replace(honest, peers=np.array([0, 2, 3, 4]))
    refused(h.server, 0, to_self.encode(), match="other than its holders")
    h.server.receive(0, honest.encode())
    run_to_end(h)


def test_duplicate_public_key_across_clients_is_refused():
    h = Harness()
    first = decode_message(h.clients[0].start())
    h.server.receive(0, first.encode())
    copycat = AdvertiseKeys(SESSION, 1, first.cipher_public_key, b"\x05" * 32)
    refused(h.server, 1, copycat.encode(), match="already used by client 0")
    refused(h.server, 1, AdvertiseKeys(SESSION, 1, b"\x05" * 32, b"\x05" * 32).encode(), match="same key twice")


@pytest.mark.parametrize("low_order", [bytes(32), (1).to_bytes(32, "little"),
                                       bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")])
def test_low_order_public_keys_are_refused(low_order):
    # A client advertising a low-order point would make every honest peer's agreement fail.
    h = Harness()
    advert = decode_message(h.clients[0].start())
    refused(h.server, 0, dataclasses.replace(advert, mask_public_key=low_order).encode(), match="unusable")
    refused(h.server, 0, dataclasses.replace(advert, cipher_public_key=low_order).encode(), match="unusable")
    h.server.receive(0, advert.encode())


def test_malicious_mode_refuses_unsigned_and_badly_signed_messages():
    h = Harness(malicious=True)
    advert = decode_message(h.clients[0].start())
    refused(h.server, 0, dataclasses.replace(advert, signature=None).encode(), match="unsigned")
    refused(h.server, 0, dataclasses.replace(advert, signature=bytes(64)).encode(), match="bad signature")
    h.server.receive(0, advert.encode())
    h.last_replies = {u: h.clients[u].start() for u in range(1, 5)}
    h._deliver_to_server()
    h.step()
    h.step()
    assert h.server.state is ServerState.CONSISTENCY_CHECK
    refused(h.server, 0, ConsistencySignature(SESSION, 0, bytes(64)).encode(), match="survivor list")
    run_to_end(h)


def test_honest_mode_refuses_signed_adverts():
    h = Harness()
    advert = decode_message(h.clients[0].start())
    refused(h.server, 0, dataclasses.replace(advert, signature=bytes(64)).encode(), match="honest-but-curious")


def test_unmasking_shares_must_match_what_the_client_holds():
    h = Harness(n=5, t=3)
    h.run_until(ServerState.MASKED_INPUT)
    h.step(skip={4})
    honest = decode_message(h.clients[0].handle(h.inbox.pop(0)))
    # claim client 4 survived (self-mask share) instead of revealing its mask-key share
    greedy = UnmaskingShares(SESSION, 0, np.array([0, 1, 2, 3, 4]), np.zeros((5, 9), np.uint32), [], np.zeros((0, 9)))
    refused(h.server, 0, greedy.encode(), match="self-mask shares")
    h.server.receive(0, honest.encode())
    run_to_end(h)


@pytest.mark.parametrize("round_name", ["advertise_keys", "share_keys", "masked_input", "unmasking"])
def test_abort_below_threshold_in_every_round(round_name):
    h = Harness(n=5, t=4)
    with pytest.raises(AbortError) as info:
        h.run(drops={round_name: {0, 1}})
    assert info.value.round == round_name
    assert h.server.state is ServerState.ABORTED and h.server.result is None
    with pytest.raises(SessionStateError):
        h.server.close_round()


def test_abort_in_consistency_check():
    h = Harness(n=5, t=4, malicious=True)
    with pytest.raises(AbortError, match="signed the survivor list; none has 4 signing holders"):
        h.run(drops={"consistency_check": {0, 1}})


def test_deadline_closes_the_round_and_missing_clients_count_as_dropped():
    h = Harness(n=5, t=2)
    h.start()
    for u in (0, 1, 2):
        h.server.receive(u, h.clients[u].handle(h.inbox[u]))
    assert h.server.state is ServerState.SHARE_KEYS and h.server.pending_clients == {3, 4}
    outbox = h.server.close_round()
    assert sorted(outbox) == [0, 1, 2] and h.server.dropped["share_keys"] == [3, 4]
    h.inbox = outbox
    result = run_to_end(h)
    assert result.survivors == [0, 1, 2]


def test_an_abort_at_close_leaves_a_notice_for_every_client_the_round_expected():
    h = Harness(n=5, t=3)
    h.run_until(ServerState.MASKED_INPUT)
    for u in (0, 1):  # 3 of 5 masked inputs: every client keeps 2 < t = 3 valid survivors
        h.server.receive(u, h.clients[u].handle(h.inbox[u]))
    assert h.server.abort_notices == {}
    with pytest.raises(AbortError):
        h.server.close_round()
    assert sorted(h.server.abort_notices) == [0, 1, 2, 3, 4]  # the expected set, answered or not
    notice = decode_message(h.server.abort_notices[3])
    assert notice.recipient == 3 and "masked_input" in notice.reason


def test_driver_abort_sends_notices():
    h = Harness()
    h.start()
    notices = h.server.abort("operator stopped the job")
    assert sorted(notices) == [0, 1, 2, 3, 4]
    assert decode_message(notices[0]).reason == "operator stopped the job"
    assert h.server.state is ServerState.ABORTED


def _unmask_with(h, tamper):
    """Answer the unmask requests, letting ``tamper(u, reply)`` alter each reply."""
    for u in sorted(h.inbox):
        reply = tamper(u, decode_message(h.clients[u].handle(h.inbox[u])))
        h.server.receive(u, reply.encode())


def _shifted(shares, row, limb, by):
    shares = shares.copy()
    shares[row, limb] = (int(shares[row, limb]) + by) % (2**31 - 1)
    return shares


@pytest.mark.parametrize("n, t", [(5, 3), (8, 3)])
def test_a_wrong_self_mask_share_is_corrected_and_its_sender_named(n, t):
    # (5, 3): four shares of each owner for t = 3, one wrong: found by leaving each out in turn;
    # (8, 3): seven shares, Berlekamp-Welch corrects up to two wrong ones.
    h = Harness(n=n, t=t)
    h.run_until(ServerState.UNMASKING)
    _unmask_with(h, lambda u, r: dataclasses.replace(r, self_mask_shares=_shifted(r.self_mask_shares, 0, 0, 1))
                 if u == 0 else r)
    result = h.server.result
    assert h.server.state is ServerState.COMPLETED and result.survivors == list(range(n))
    assert np.array_equal(result.aggregate, h.expected_sum(result.survivors))
    assert result.misbehaving == {0: "revealed a wrong self-mask share of client 1"}


def test_a_wrong_mask_key_share_is_corrected_too():
    h = Harness(n=6, t=3)
    h.run_until(ServerState.MASKED_INPUT)
    h.step(skip={5})
    _unmask_with(h, lambda u, r: dataclasses.replace(r, mask_key_shares=_shifted(r.mask_key_shares, 0, 3, 5))
                 if u == 2 else r)
    result = h.server.result
    assert result.survivors == [0, 1, 2, 3, 4] and result.misbehaving == {2: "revealed a wrong mask-key share of client 5"}
    assert np.array_equal(result.aggregate, h.expected_sum(result.survivors))


def test_too_many_wrong_shares_abort_instead_of_a_wrong_sum():
    h = Harness(n=5, t=3)
    h.run_until(ServerState.UNMASKING)
    with pytest.raises(AbortError, match="inconsistent beyond correction"):
        _unmask_with(h, lambda u, r: dataclasses.replace(r, self_mask_shares=_shifted(r.self_mask_shares, 0, 0, 1))
                     if u in (2, 3) else r)
    assert h.server.state is ServerState.ABORTED and h.server.result is None


def test_construction_is_validated():
    from secagg.protocol.config import SecAggConfig
    cfg = SecAggConfig(num_clients=3, threshold=2, vector_length=1, malicious=True)
    with pytest.raises(ParameterError):
        ServerSession(cfg, SESSION)
    with pytest.raises(ParameterError):
        ServerSession(cfg, b"short", verify_keys={0: bytes(32), 1: bytes(32), 2: bytes(32)})
    with pytest.raises(ParameterError):
        ServerSession("not a config", SESSION)


def test_the_same_key_under_another_encoding_is_a_duplicate_for_the_server_too():
    h = Harness()
    first = decode_message(h.clients[0].start())
    h.server.receive(0, first.encode())
    p = 2**255 - 19
    twin = pow(int.from_bytes(first.mask_public_key, "little"), p - 2, p).to_bytes(32, "little")
    copycat = AdvertiseKeys(SESSION, 1, (7).to_bytes(32, "little"), twin)
    refused(h.server, 1, copycat.encode(), match="already used by client 0")
