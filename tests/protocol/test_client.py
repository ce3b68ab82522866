"""Every refusal rule of the client: typed error, no state change, honest message still works."""

import dataclasses

import numpy as np
import pytest

from secagg.crypto.randomness import TestOnlySeededRandomness
from secagg.crypto.signatures import IdentityKey
from secagg.errors import AbortError, MalformedMessage, ParameterError, ProtocolViolation, SessionStateError
from secagg.protocol.client import ClientSession, ClientState
from secagg.protocol.config import SecAggConfig
from secagg.protocol.messages import (
    AbortNotice,
    ConsistencyRequest,
    KeyDirectory,
    ShareBundles,
    UnmaskRequest,
    decode_message,
)
from secagg.protocol.server import ServerSession, ServerState
from tests.harness import SESSION, Harness

SPARSE = {"n": 20, "t": 3, "neighbors": 6}


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
    return KeyDirectory(msg.session_id, msg.recipient, tuple(entries), msg.transcript).encode()


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


def test_start_twice_and_handle_before_start_are_caller_errors():
    h = Harness()
    with pytest.raises(SessionStateError, match="before start"):
        h.clients[0].handle(b"anything")
    h.clients[0].start()
    with pytest.raises(SessionStateError):
        h.clients[0].start()


class ShortRandomness:
    def random_bytes(self, n):
        return b"\x01" * (n - 1)


def test_a_random_source_that_returns_too_few_bytes_is_a_parameter_error():
    cfg = SecAggConfig(num_clients=5, threshold=3, vector_length=8)
    client = ClientSession(cfg, 0, SESSION, [0] * 8, rng=ShortRandomness())
    with pytest.raises(ParameterError, match="returned 31 bytes where 32 were asked for"):
        client.start()
    assert client.state is ClientState.READY


# ---------------------------------------------------------------- key directory (round 1)

def test_substituted_own_key_or_draw_is_refused():
    h = Harness()
    h.run_until(ServerState.SHARE_KEYS)
    msg = directory_for(h, 0)
    forged = [dataclasses.replace(e, mask_public_key=b"\x42" * 32) if e.client_id == 0 else e for e in msg.entries]
    refused(h.clients[0], with_entries(msg, forged), match="own entry")
    missing = [e for e in msg.entries if e.client_id != 0]
    refused(h.clients[0], with_entries(msg, missing), match="own entry")
    s = Harness(**SPARSE)
    s.run_until(ServerState.SHARE_KEYS)
    msg = directory_for(s, 0)
    own = next(e for e in msg.entries if e.client_id == 0)
    other_draw = np.array(sorted(set(range(1, 20)) - set(own.holders.tolist()))[:6])
    forged = [dataclasses.replace(e, holders=other_draw) if e.client_id == 0 else e for e in msg.entries]
    refused(s.clients[0], with_entries(msg, forged), match="own entry")
    finish_and_check(h)
    finish_and_check(s)


def test_transcript_without_this_clients_advertisement_is_refused():
    h = Harness()
    h.run_until(ServerState.SHARE_KEYS)
    msg = directory_for(h, 0)
    foreign = directory_for(h, 1).transcript  # a valid path, for someone else's leaf
    refused(h.clients[0], KeyDirectory(SESSION, 0, msg.entries, foreign).encode(), match="transcript root")
    forged_root = dataclasses.replace(msg.transcript, root=b"\x00" * 32)
    refused(h.clients[0], KeyDirectory(SESSION, 0, msg.entries, forged_root).encode(), match="transcript root")
    finish_and_check(h)


def test_peer_key_appearing_twice_is_refused():
    h = Harness()
    h.run_until(ServerState.SHARE_KEYS)
    msg = directory_for(h, 0)
    entries = list(msg.entries)
    entries[2] = dataclasses.replace(entries[2], cipher_public_key=entries[1].mask_public_key)
    refused(h.clients[0], with_entries(msg, entries), match="appears twice")
    finish_and_check(h)


def test_a_key_with_its_ignored_top_bit_set_is_malformed_not_a_new_key():
    # RFC 7748 ignores bit 255: a copy of a key with that bit flipped is the same point. The codec
    # refuses every non-canonical encoding, so a duplicate can never hide behind different bytes.
    h = Harness()
    h.run_until(ServerState.SHARE_KEYS)
    raw = bytearray(h.inbox[0])
    msg = directory_for(h, 0)
    offset = raw.index(msg.entries[1].cipher_public_key)
    raw[offset + 31] |= 0x80
    refused(h.clients[0], bytes(raw), MalformedMessage, match="canonical X25519")
    finish_and_check(h)


def test_unknown_ids_and_strangers_are_refused():
    h = Harness(**SPARSE)
    h.run_until(ServerState.SHARE_KEYS)
    msg = directory_for(h, 0)
    listed = {e.client_id for e in msg.entries}
    extra = dataclasses.replace(msg.entries[-1], client_id=99, cipher_public_key=b"\x01" * 32,
                                mask_public_key=b"\x02" * 32)
    refused(h.clients[0], with_entries(msg, list(msg.entries) + [extra]), match="unknown client 99")
    outsider = next(u for u in range(20) if u not in listed)
    stranger = dataclasses.replace(msg.entries[-1], client_id=outsider, cipher_public_key=b"\x01" * 32,
                                   mask_public_key=b"\x02" * 32,
                                   holders=np.array([v for v in range(20) if v not in (0, outsider)][:6]))
    entries = sorted(list(msg.entries) + [stranger], key=lambda e: e.client_id)
    refused(h.clients[0], with_entries(msg, entries), match="neither holds for this client nor drew it")
    finish_and_check(h)


def test_a_directory_with_fewer_than_t_other_holders_is_refused():
    # The victim never counts itself: a directory trimmed to the victim and t - 1 others (the
    # coordinator's colluders, say) is refused, so its shares never go to fewer than t others.
    h = Harness(n=5, t=3)
    h.run_until(ServerState.SHARE_KEYS)
    msg = directory_for(h, 0)
    trimmed = [e for e in msg.entries if e.client_id in (0, 1, 2)]
    refused(h.clients[0], with_entries(msg, trimmed), match="only 2 of this client's holders")
    finish_and_check(h)


def test_malicious_mode_refuses_unsigned_and_badly_signed_directories():
    h = Harness(malicious=True)
    h.run_until(ServerState.SHARE_KEYS)
    msg = directory_for(h, 0)
    unsigned = [dataclasses.replace(e, signature=None) for e in msg.entries]  # all or none are signed
    refused(h.clients[0], with_entries(msg, unsigned), match="own entry")
    entries = list(msg.entries)
    entries[1] = dataclasses.replace(entries[1], signature=entries[2].signature)
    refused(h.clients[0], with_entries(msg, entries), match="bad signature")
    # a key substituted by the server cannot carry the owner's signature
    entries = list(msg.entries)
    entries[3] = dataclasses.replace(entries[3], mask_public_key=b"\x07" * 32)
    refused(h.clients[0], with_entries(msg, entries), match="bad signature")
    finish_and_check(h)


# ---------------------------------------------------------------- share bundles (round 2)

def test_a_bundle_that_does_not_open_costs_only_its_senders_shares():
    # A cheating peer (or the server) corrupts the bundle it sends to client 0: client 0 keeps
    # going, holds nothing for the sender, still masks with it, and reports it.
    h = Harness(n=6, t=3)
    h.run_until(ServerState.MASKED_INPUT)
    msg = decode_message(h.inbox[0])
    flipped = msg.ciphertexts.copy()
    flipped[0, -1] ^= 1
    h.inbox[0] = ShareBundles(SESSION, 0, msg.peers, flipped, msg.holders).encode()
    h.step()
    assert h.clients[0].rejected == [int(msg.peers[0])]
    assert h.server.reports == [(0, int(msg.peers[0]))]
    result = finish_and_check(h)
    assert result.survivors == list(range(6)) and result.reports == [(0, int(msg.peers[0]))]


def test_a_bundle_sealed_for_another_recipient_is_reported_too():
    h = Harness(n=6, t=3)
    h.run_until(ServerState.MASKED_INPUT)
    msg = decode_message(h.inbox[0])
    other = decode_message(h.inbox[2])  # client 1's bundle for client 2, handed to client 0
    swapped = msg.ciphertexts.copy()
    swapped[list(msg.peers).index(1)] = other.ciphertexts[list(other.peers).index(1)]
    h.inbox[0] = ShareBundles(SESSION, 0, msg.peers, swapped, msg.holders).encode()
    h.step()
    assert h.clients[0].rejected == [1]
    finish_and_check(h)


def test_too_few_live_holders_are_refused():
    h = Harness(n=5, t=3)
    h.run_until(ServerState.MASKED_INPUT)
    msg = decode_message(h.inbox[0])
    refused(h.clients[0], ShareBundles(SESSION, 0, msg.peers, msg.ciphertexts, msg.holders[:2]).encode(),
            match="fewer than the threshold")
    finish_and_check(h)


def test_bundles_from_clients_that_did_not_draw_this_one_are_refused():
    h = Harness(**SPARSE)
    h.run_until(ServerState.MASKED_INPUT)
    msg = decode_message(h.inbox[0])
    outsider = next(u for u in range(1, 20) if u not in h.clients[0]._owners)
    peers = np.append(msg.peers, outsider)
    table = np.vstack([msg.ciphertexts, np.zeros((1, msg.ciphertexts.shape[1]), np.uint8)])
    order = np.argsort(peers)
    refused(h.clients[0], ShareBundles(SESSION, 0, peers[order], table[order], msg.holders).encode(),
            match="did not draw this client")
    not_mine = np.array(sorted(set(msg.holders.tolist()) | {outsider}))
    if outsider not in h.clients[0]._holders:
        refused(h.clients[0], ShareBundles(SESSION, 0, msg.peers, msg.ciphertexts, not_mine).encode(),
                match="did not seal shares to")
    finish_and_check(h)


# ---------------------------------------------------------------- unmasking (round 4)

def test_unmask_request_with_fewer_than_t_holders_is_refused():
    h = Harness(n=6, t=4)
    h.run_until(ServerState.UNMASKING)
    refused(h.clients[0], UnmaskRequest(SESSION, 0, [0, 1, 2, 3]).encode(), match="fewer than the threshold")
    finish_and_check(h)


def test_unmask_request_inconsistent_with_what_the_client_saw_is_refused():
    h = Harness(n=6, t=3)
    h.run_until(ServerState.MASKED_INPUT)
    h.step(skip={5})  # 5 never sends its masked input... but it did send shares: fine to name
    refused(h.clients[0], UnmaskRequest(SESSION, 0, [1, 2, 3, 4]).encode(), match="does not contain this client")
    refused(h.clients[0], UnmaskRequest(SESSION, 0, [0, 1, 2, 77]).encode(), match="unknown client 77")
    finish_and_check(h)


def test_survivor_that_left_before_the_masked_inputs_is_refused():
    h = Harness(n=6, t=3)
    h.start()
    h.step(skip={5})  # 5 vanishes before sharing keys: nobody holds its shares
    h.step()
    refused(h.clients[0], UnmaskRequest(SESSION, 0, [0, 1, 2, 3, 5]).encode(), match="left the session")
    finish_and_check(h)


def test_a_client_answers_one_unmask_request_only_so_never_reveals_both_shares():
    h = Harness(n=6, t=3)
    h.run_until(ServerState.MASKED_INPUT)
    h.step(skip={5})
    honest = h.inbox[0]
    reply = decode_message(h.clients[0].handle(honest))
    assert set(reply.self_mask_owners.tolist()).isdisjoint(reply.mask_key_owners.tolist())
    assert 5 in reply.mask_key_owners and 5 not in reply.self_mask_owners
    assert 0 not in reply.self_mask_owners  # a client holds no share of its own secrets
    assert h.clients[0].revealed[5] == "mask_key" and h.clients[0].revealed[1] == "self_mask"
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
    own_and_one = tuple(s for s in honest.signatures if s[0] in (0, 1, 2))
    refused(c, UnmaskRequest(SESSION, 0, honest.survivors, own_and_one).encode(), match="fewer than the threshold")
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
    assert h.clients[0]._input is None and h.clients[0]._mask_key is None  # its secrets are gone
    refused(h.clients[0], AbortNotice(SESSION, 0, "again").encode(), match="already left")
    refused(h.clients[0], h.inbox[0])  # the round's message it was waiting for: the session is over


def test_abort_notice_after_the_unmasking_answer_is_taken_too():
    # The sum can still fail after a client revealed its shares (too few or wrong shares): the
    # server's notice then is the news, not a violation (spec section 8, rule C3).
    h = Harness()
    h.run_until(ServerState.UNMASKING)
    h.clients[0].handle(h.inbox[0])
    assert h.clients[0].state is ClientState.DONE
    with pytest.raises(AbortError, match="too few shares"):
        h.clients[0].handle(AbortNotice(SESSION, 0, "too few shares").encode())
    assert h.clients[0].state is ClientState.ABORTED


@pytest.mark.parametrize("kwargs", [
    {"client_id": 5}, {"client_id": -1}, {"client_id": True}, {"session_id": b"short"},
    {"input_vector": [1, 2, 3]}, {"input_vector": [2**40] * 8}, {"input_vector": [-1] * 8},
])
def test_bad_construction_is_a_parameter_error(kwargs):
    cfg = SecAggConfig(num_clients=5, threshold=3, vector_length=8)
    args = {"client_id": 0, "session_id": SESSION, "input_vector": [0] * 8} | kwargs
    with pytest.raises(ParameterError):
        ClientSession(cfg, args["client_id"], args["session_id"], args["input_vector"])


def test_malicious_mode_needs_matching_identity():
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
    config = SecAggConfig(num_clients=n, threshold=2, vector_length=vector_length)
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


def test_the_same_key_plus_a_point_of_order_two_is_a_duplicate_too():
    # u and 1/u (mod 2^255 - 19) are P and P + (0, 0): X25519's clamped scalars agree alike with
    # both, so the client compares keys by what they agree on, not by their bytes
    h = Harness(malicious=False)
    h.run_until(ServerState.SHARE_KEYS)
    msg = directory_for(h, 0)
    p = 2**255 - 19
    twin = pow(int.from_bytes(msg.entries[1].mask_public_key, "little"), p - 2, p).to_bytes(32, "little")
    entries = list(msg.entries)
    entries[2] = dataclasses.replace(entries[2], mask_public_key=twin)
    refused(h.clients[0], with_entries(msg, entries), match="appears twice")
    finish_and_check(h)


@pytest.mark.parametrize("verify_keys", [{"x": bytes(32)}, [bytes(32)] * 3, {0: "text", 1: bytes(32), 2: bytes(32)},
                                         {0: b"\xff" * 32, 1: bytes(32), 2: bytes(32)}])
def test_bad_verify_keys_are_parameter_errors(verify_keys):
    cfg = SecAggConfig(num_clients=3, threshold=2, vector_length=1, malicious=True)
    with pytest.raises(ParameterError, match="verify_keys"):
        ClientSession(cfg, 0, SESSION, [0], identity=IdentityKey.generate(TestOnlySeededRandomness(0)),
                      verify_keys=verify_keys)


def test_a_client_with_min_survivors_reveals_no_share_for_a_shorter_survivor_list():
    # DP over the network (issue 17): a sum must carry at least min_shares noise shares. The
    # participant's own session refuses to help unmask a smaller sum, whatever the server's
    # threshold says: a ProtocolViolation before any share leaves, and nothing changes.
    from secagg.errors import ParameterError, ProtocolViolation
    from secagg.protocol import ClientSession, SecAggConfig, ServerSession

    config = SecAggConfig(num_clients=5, threshold=2, vector_length=4)
    session_id = bytes(range(16))
    server = ServerSession(config, session_id)
    clients = [ClientSession(config, i, session_id, np.zeros(4, dtype=np.uint32), min_survivors=4) for i in range(5)]
    outbox = {}
    for i, client in enumerate(clients):
        outbox = server.receive(i, client.start()) or outbox
    for round_ in range(2):  # share keys, then masked inputs from clients 0..2 only
        replies = {i: clients[i].handle(message) for i, message in outbox.items()}
        outbox = {}
        for i, reply in replies.items():
            if round_ == 1 and i >= 3:
                continue  # clients 3 and 4 vanish before their masked input
            outbox = server.receive(i, reply) or outbox
        if not outbox:
            outbox = server.close_round()
    state = clients[0].state
    with pytest.raises(ProtocolViolation, match="no sum of fewer than 4 inputs"):
        clients[0].handle(outbox[0])  # the unmask request lists 3 survivors
    assert clients[0].state is state and not clients[0].revealed
    with pytest.raises(ParameterError, match="min_survivors"):
        ClientSession(config, 0, session_id, np.zeros(4, dtype=np.uint32), min_survivors=6)
