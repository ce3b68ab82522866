"""Every refusal rule of the client: typed error, no state change, honest message still works."""

import dataclasses

import numpy as np
import pytest

from secagg.crypto.signatures import IdentityKey
from secagg.crypto.randomness import TestOnlySeededRandomness
from secagg.errors import AbortError, MalformedMessage, ParameterError, ProtocolViolation, SessionStateError
from secagg.protocol.client import ClientSession, ClientState
from secagg.protocol.messages import (
    AbortNotice,
    ConsistencyRequest,
    KeyDirectory,
    ShareBundles,
    UnmaskRequest,
    decode_message,
)
from secagg.protocol.config import SecAggConfig
from secagg.protocol.server import ServerSession, ServerState
from tests.harness import SESSION, Harness


def refused(client, data, error=ProtocolViolation, match=None):
    """The client refuses ``data`` with ``error`` and its state does not move."""
    before = client.state
    with pytest.raises(error, match=match) as info:
        client.handle(data)
    assert client.state is before
    return info.value


def finish_and_check(h):
    while h.server.state not in (ServerState.COMPLETED, ServerState.ABORTED):
        h.step()
    result = h.server.result
    assert np.array_equal(result.aggregate, h.expected_sum(result.survivors))
    return result


def directory_for(h, u):
    return decode_message(h.inbox[u])


def with_entries(msg, entries):
    return KeyDirectory(msg.session_id, msg.recipient, tuple(entries)).encode()


# ---------------------------------------------------------------- addressing and rounds

def test_garbage_wrong_session_wrong_recipient_and_wrong_round_are_refused():
    h = Harness()
    h.run_until(ServerState.SHARE_KEYS)
    client, data = h.clients[0], h.inbox[0]
    assert refused(client, b"garbage", MalformedMessage).party == "server"
    msg = decode_message(data)
    refused(client, dataclasses.replace(msg, session_id=b"\x09" * 16).encode(), match="another session")
    refused(client, dataclasses.replace(msg, recipient=1).encode(), match="addressed to client 1")
    refused(client, UnmaskRequest(SESSION, 0, [0, 1, 2]).encode(), match="unexpected UnmaskRequest")
    refused(client, h.last_replies.get(0) or h.clients[1].start(), match="client-to-server")
    finish_and_check(h)


def test_start_twice_is_a_caller_error():
    h = Harness()
    h.clients[0].start()
    with pytest.raises(SessionStateError):
        h.clients[0].start()


# ---------------------------------------------------------------- key directory (round 1)

def test_substituted_own_key_is_refused():
    h = Harness()
    h.run_until(ServerState.SHARE_KEYS)
    msg = directory_for(h, 0)
    forged = [dataclasses.replace(e, mask_public_key=b"\x42" * 32) if e.client_id == 0 else e for e in msg.entries]
    refused(h.clients[0], with_entries(msg, forged), match="own keys")
    missing = [e for e in msg.entries if e.client_id != 0]
    refused(h.clients[0], with_entries(msg, missing), match="own keys")
    finish_and_check(h)


def test_peer_key_appearing_twice_is_refused():
    h = Harness()
    h.run_until(ServerState.SHARE_KEYS)
    msg = directory_for(h, 0)
    entries = list(msg.entries)
    entries[2] = dataclasses.replace(entries[2], cipher_public_key=entries[1].mask_public_key)
    refused(h.clients[0], with_entries(msg, entries), match="appears twice")
    finish_and_check(h)


def test_unknown_ids_and_non_neighbours_are_refused():
    h = Harness(n=8, t=2, neighbors=2)
    h.run_until(ServerState.SHARE_KEYS)
    msg = directory_for(h, 0)
    extra = dataclasses.replace(msg.entries[-1], client_id=99, cipher_public_key=b"\x01" * 32,
                                mask_public_key=b"\x02" * 32)
    refused(h.clients[0], with_entries(msg, list(msg.entries) + [extra]), match="unknown client 99")
    outsider = next(u for u in range(8) if u != 0 and u not in h.clients[0]._holder_set)
    stranger = dataclasses.replace(msg.entries[-1], client_id=outsider, cipher_public_key=b"\x01" * 32,
                                   mask_public_key=b"\x02" * 32)
    entries = sorted(list(msg.entries) + [stranger], key=lambda e: e.client_id)
    refused(h.clients[0], with_entries(msg, entries), match="not a neighbour")
    finish_and_check(h)


def test_too_few_holders_in_directory_is_refused():
    h = Harness(n=5, t=4)
    h.run_until(ServerState.SHARE_KEYS)
    msg = directory_for(h, 0)
    refused(h.clients[0], with_entries(msg, msg.entries[:3]), match="fewer than the threshold")
    finish_and_check(h)


def test_malicious_mode_refuses_unsigned_and_badly_signed_directories():
    h = Harness(malicious=True)
    h.run_until(ServerState.SHARE_KEYS)
    msg = directory_for(h, 0)
    unsigned = [dataclasses.replace(e, signature=None) for e in msg.entries]
    refused(h.clients[0], with_entries(msg, unsigned), match="unsigned")
    entries = list(msg.entries)
    entries[1] = dataclasses.replace(entries[1], signature=entries[2].signature)
    refused(h.clients[0], with_entries(msg, entries), match="bad signature")
    # a key substituted by the server cannot carry the owner's signature
    entries = list(msg.entries)
    entries[3] = dataclasses.replace(entries[3], mask_public_key=b"\x07" * 32)
    refused(h.clients[0], with_entries(msg, entries), match="bad signature")
    finish_and_check(h)


# ---------------------------------------------------------------- share bundles (round 2)

def test_tampered_misdirected_and_foreign_bundles_are_refused():
    h = Harness()
    h.run_until(ServerState.MASKED_INPUT)
    msg = decode_message(h.inbox[0])
    flipped = msg.ciphertexts.copy()
    flipped[0, -1] ^= 1
    refused(h.clients[0], ShareBundles(SESSION, 0, msg.peers, flipped).encode(), match="does not open")
    # client 1's bundle for client 2, handed to client 0 as if it came from client 1
    other = decode_message(h.inbox[2])
    swapped = msg.ciphertexts.copy()
    swapped[list(msg.peers).index(1)] = other.ciphertexts[list(other.peers).index(1)]
    refused(h.clients[0], ShareBundles(SESSION, 0, msg.peers, swapped).encode(), match="does not open")
    finish_and_check(h)


def test_too_few_bundles_are_refused():
    h = Harness(n=5, t=4)
    h.run_until(ServerState.MASKED_INPUT)
    msg = decode_message(h.inbox[0])
    refused(h.clients[0], ShareBundles(SESSION, 0, msg.peers[:2], msg.ciphertexts[:2]).encode(),
            match="fewer than the threshold")
    finish_and_check(h)


def test_bundle_from_a_client_never_shared_with_is_refused():
    h = Harness(n=8, t=2, neighbors=2)
    h.run_until(ServerState.MASKED_INPUT)
    msg = decode_message(h.inbox[0])
    outsider = next(u for u in range(8) if u != 0 and u not in h.clients[0]._holder_set)
    peers = np.append(msg.peers, outsider)
    table = np.vstack([msg.ciphertexts, msg.ciphertexts[:1]])
    order = np.argsort(peers)
    refused(h.clients[0], ShareBundles(SESSION, 0, peers[order], table[order]).encode(), match="sent no shares")
    finish_and_check(h)


# ---------------------------------------------------------------- unmasking (round 4)

def test_unmask_request_with_fewer_than_t_survivors_is_refused():
    h = Harness(n=6, t=4)
    h.run_until(ServerState.UNMASKING)
    refused(h.clients[0], UnmaskRequest(SESSION, 0, [0, 1, 2]).encode(), match="fewer than the threshold")
    finish_and_check(h)


def test_unmask_request_inconsistent_with_what_the_client_saw_is_refused():
    h = Harness(n=6, t=3)
    h.run_until(ServerState.MASKED_INPUT)
    h.step(skip={5})  # 5 never sends its masked input... but it did send shares: fine to name
    refused(h.clients[0], UnmaskRequest(SESSION, 0, [1, 2, 3, 4]).encode(), match="does not contain this client")
    refused(h.clients[0], UnmaskRequest(SESSION, 0, [0, 1, 2, 77]).encode(), match="unknown client 77")
    finish_and_check(h)


def test_survivor_that_never_sent_shares_is_refused():
    h = Harness(n=6, t=3)
    h.start()
    h.step(skip={5})  # 5 vanishes before sharing keys: nobody holds its shares
    h.step()
    refused(h.clients[0], UnmaskRequest(SESSION, 0, [0, 1, 5]).encode(), match="never sent this client its shares")
    finish_and_check(h)


def test_a_client_answers_one_unmask_request_only_so_never_reveals_both_shares():
    h = Harness(n=6, t=3)
    h.run_until(ServerState.MASKED_INPUT)
    h.step(skip={5})
    honest = h.inbox[0]
    reply = decode_message(h.clients[0].handle(honest))
    assert set(reply.self_mask_owners.tolist()).isdisjoint(reply.mask_key_owners.tolist())
    assert 5 in reply.mask_key_owners and 5 not in reply.self_mask_owners
    assert h.clients[0].revealed[5] == "mask_key" and h.clients[0].revealed[0] == "self_mask"
    # the server now "changes its mind" and claims client 5 survived: refused, nothing revealed
    refused(h.clients[0], UnmaskRequest(SESSION, 0, [0, 1, 2, 3, 4, 5]).encode(), match="unexpected")
    refused(h.clients[0], honest, match="unexpected")


def test_malicious_mode_refuses_unsigned_or_altered_survivor_lists():
    h = Harness(n=6, t=3, malicious=True)
    h.run_until(ServerState.CONSISTENCY_CHECK)
    h.step()  # everyone signs [0..5]
    assert h.server.state is ServerState.UNMASKING
    honest = decode_message(h.inbox[0])
    c = h.clients[0]
    refused(c, UnmaskRequest(SESSION, 0, [0, 1, 2, 3, 4], honest.signatures[:5]).encode(), match="other than the one")
    refused(c, UnmaskRequest(SESSION, 0, honest.survivors, honest.signatures[:2]).encode(), match="fewer than the threshold")
    bad = list(honest.signatures)
    bad[1] = (bad[1][0], bad[2][1])
    refused(c, UnmaskRequest(SESSION, 0, honest.survivors, tuple(bad)).encode(), match="bad consistency signature")
    refused(c, UnmaskRequest(SESSION, 0, honest.survivors).encode(), match="fewer than the threshold")
    finish_and_check(h)


def test_malicious_server_cannot_show_different_survivor_lists_to_different_clients():
    # The server tells client 0 that client 5 dropped (to learn 5's mask key) while the others
    # were told 5 survived (to learn 5's self mask). Client 0 signed one list; the signatures the
    # server can collect are over the other, so client 0 refuses.
    h = Harness(n=6, t=3, malicious=True)
    h.run_until(ServerState.CONSISTENCY_CHECK)
    lie = ConsistencyRequest(SESSION, 0, [0, 1, 2, 3, 4]).encode()
    h.clients[0].handle(lie)
    h.inbox.pop(0)
    h.step()  # the others sign [0..5]
    signed_full_list = decode_message(h.inbox[1])
    refused(h.clients[0], UnmaskRequest(SESSION, 0, signed_full_list.survivors, signed_full_list.signatures).encode(),
            match="other than the one")


# ---------------------------------------------------------------- abort, construction

def test_abort_notice_moves_to_aborted_and_raises():
    h = Harness()
    h.run_until(ServerState.SHARE_KEYS)
    with pytest.raises(AbortError, match="deadline"):
        h.clients[0].handle(AbortNotice(SESSION, 0, "deadline missed").encode())
    assert h.clients[0].state is ClientState.ABORTED and h.clients[0].abort_reason == "deadline missed"


@pytest.mark.parametrize("kwargs", [
    {"client_id": 5}, {"client_id": -1}, {"client_id": True}, {"session_id": b"short"},
    {"input_vector": [1, 2, 3]}, {"input_vector": [2**40] * 8}, {"input_vector": [-1] * 8},
])
def test_bad_construction_is_a_parameter_error(kwargs):
    from secagg.protocol.config import SecAggConfig
    cfg = SecAggConfig(num_clients=5, threshold=3, vector_length=8)
    args = {"client_id": 0, "session_id": SESSION, "input_vector": [0] * 8} | kwargs
    with pytest.raises(ParameterError):
        ClientSession(cfg, args["client_id"], args["session_id"], args["input_vector"])


def test_malicious_mode_needs_matching_identity():
    from secagg.protocol.config import SecAggConfig
    cfg = SecAggConfig(num_clients=3, threshold=2, vector_length=1, malicious=True)
    keys = [IdentityKey.generate(TestOnlySeededRandomness(i)) for i in range(3)]
    verify = {i: k.public_bytes for i, k in enumerate(keys)}
    with pytest.raises(ParameterError):
        ClientSession(cfg, 0, SESSION, [0], verify_keys=verify)
    with pytest.raises(ParameterError):
        ClientSession(cfg, 0, SESSION, [0], identity=keys[1], verify_keys=verify)
    with pytest.raises(ParameterError):
        ClientSession(cfg, 0, SESSION, [0], identity=keys[0], verify_keys={0: verify[0]})
    ClientSession(cfg, 0, SESSION, [0], identity=keys[0], verify_keys=verify)


def _transcript(vector_length, n=4, drop_before_unmasking=(3,)):
    """Every client message of one seeded session, by round, for vectors of ``vector_length``."""
    config = SecAggConfig(num_clients=n, threshold=3, vector_length=vector_length)
    session_id = bytes(range(16))
    server = ServerSession(config, session_id)
    clients = {u: ClientSession(config, u, session_id, np.full(vector_length, u, dtype=np.uint32),
                                rng=TestOnlySeededRandomness(7).child(b"client/%d" % u)) for u in range(n)}
    sent = {}
    inbox = {}
    for u in range(n):
        sent.setdefault("advertise_keys", {})[u] = message = clients[u].start()
        inbox = server.receive(u, message) or inbox
    for round_name in ("share_keys", "masked_input", "unmasking"):
        outbox = {}
        for u, data in sorted(inbox.items()):
            if round_name == "unmasking" and u in drop_before_unmasking:
                continue
            sent.setdefault(round_name, {})[u] = reply = clients[u].handle(data)
            outbox = server.receive(u, reply) or outbox
        if server.state.value == round_name:
            outbox = server.close_round()
        inbox = outbox
    return sent, server.result


def test_only_the_masked_input_depends_on_the_vector_length():
    # The Flower integration replays a client's session with a one-element stand-in vector for every
    # round but masked input; that is sound only while this holds.
    long, long_result = _transcript(1000)
    short, _ = _transcript(1)
    for round_name in ("advertise_keys", "share_keys", "unmasking"):
        assert long[round_name] == short[round_name], round_name
    assert all(len(long["masked_input"][u]) > len(short["masked_input"][u]) for u in long["masked_input"])
    assert long_result.survivors == [0, 1, 2, 3]
    assert np.array_equal(long_result.aggregate, np.full(1000, 0 + 1 + 2 + 3, dtype=np.uint32))
