"""A cheating server and cheating clients, against any implementation behind the adapter.

Every attack must be refused with the error kind the spec names (sections 8 and 9). The honest
message that follows must then produce exactly the transcript's bytes: the refusal changed nothing.
Attack messages are built with secagg's codec; they are just bytes to the implementation.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from secagg.protocol import messages as m
from tests.conformance.conftest import load
from tests.conformance.replay import Transcript, drive_server

HONEST = Transcript(load("transcripts/complete-drop-masked-input.json"))  # n=5, t=3, client 2 drops
SHARE_DROP = Transcript(load("transcripts/complete-drop-share-keys.json"))  # client 1 never shares
MALICIOUS = Transcript(load("transcripts/malicious-drops-every-round.json"))


def advance(impl, transcript, u, until):
    """A client fed the transcript up to (not including) the server message that starts ``until``;
    returns (client, that message, the client's recorded reply to it or None)."""
    client = transcript.new_client(impl, u)
    pending = None
    for entry in transcript.per_client()[u]:
        data = bytes.fromhex(entry["message"])
        if "to" in entry:
            if entry["round"] == until:
                replies = [bytes.fromhex(e["message"]) for e in transcript.per_client()[u]
                           if e["round"] == until and "from" in e]
                return client, data, (replies[0] if replies else None)
            pending = data
        else:
            reply = client.start() if entry["round"] == "advertise_keys" else client.handle(pending)
            assert reply == data
    raise AssertionError(f"client {u} never reaches {until}")


def refuses(impl, party, data, kind="violation", *args):
    with pytest.raises(Exception) as info:
        party.handle(data) if not args else party.receive(*args, data)
    assert impl.error_kind(info.value) == kind, repr(info.value)


# ------------------------------------------------------------------------------ cheating server

def test_client_refuses_a_substituted_own_key(impl):
    client, honest, reply = advance(impl, HONEST, 0, "share_keys")
    directory = m.decode_message(honest)
    forged = [dataclasses.replace(e, mask_public_key=bytes(range(32))) if e.client_id == 0 else e
              for e in directory.entries]
    refuses(impl, client, m.KeyDirectory(directory.session_id, 0, tuple(forged), directory.transcript).encode())
    assert client.handle(honest) == reply


def test_client_refuses_a_peer_key_that_appears_twice(impl):
    client, honest, reply = advance(impl, HONEST, 0, "share_keys")
    directory = m.decode_message(honest)
    entries = list(directory.entries)
    entries[3] = dataclasses.replace(entries[3], cipher_public_key=entries[4].cipher_public_key)
    refuses(impl, client, m.KeyDirectory(directory.session_id, 0, tuple(entries), directory.transcript).encode())
    assert client.handle(honest) == reply


def test_client_refuses_an_unusable_peer_key_before_drawing_randomness(impl):
    # A low-order point as a peer's cipher key makes X25519 fail; the refusal must come before the
    # client draws its self-mask seed, or its (replayed) randomness would shift and the honest
    # reply below would differ from the transcript.
    client, honest, reply = advance(impl, HONEST, 0, "share_keys")
    directory = m.decode_message(honest)
    entries = [dataclasses.replace(e, cipher_public_key=bytes(32)) if e.client_id == 4 else e
               for e in directory.entries]
    refuses(impl, client, m.KeyDirectory(directory.session_id, 0, tuple(entries), directory.transcript).encode())
    assert client.handle(honest) == reply


def test_client_reports_tampered_and_misdirected_bundles_and_goes_on(impl):
    # A bundle that does not open costs only its sender's shares (spec section 8): the client
    # masks exactly as before and names the sender in its MaskedInput.
    honest_reply = None
    for swap in (False, True):
        client, honest, reply = advance(impl, HONEST, 0, "masked_input")
        honest_reply = m.decode_message(reply)
        bundles = m.decode_message(honest)
        table = bundles.ciphertexts.copy()
        if swap:  # client 1's bundle for client 3, handed to client 0
            other = m.decode_message(HONEST.received("masked_input")[3])
            table[list(bundles.peers).index(1)] = other.ciphertexts[list(other.peers).index(1)]
        else:
            table[list(bundles.peers).index(1), 20] ^= 0x40
        got = m.decode_message(client.handle(m.ShareBundles(bundles.session_id, 0, bundles.peers, table,
                                                           bundles.holders).encode()))
        assert got.rejected.tolist() == [1]
        assert np.array_equal(got.values, honest_reply.values)
    assert honest_reply.rejected.tolist() == []


def test_client_refuses_bundles_from_clients_it_does_not_hold_for(impl):
    transcript = Transcript(load("transcripts/complete-drops-every-round.json"))  # client 0 never advertised
    client, honest, reply = advance(impl, transcript, 1, "masked_input")
    bundles = m.decode_message(honest)
    peers = np.append([0], bundles.peers)
    table = np.vstack([bundles.ciphertexts[:1], bundles.ciphertexts])
    refuses(impl, client, m.ShareBundles(bundles.session_id, 1, peers, table, bundles.holders).encode())
    assert client.handle(honest) == reply


def test_client_refuses_replays_and_other_sessions(impl):
    client, honest, reply = advance(impl, HONEST, 0, "masked_input")
    refuses(impl, client, HONEST.received("share_keys")[0])  # last round's message again
    other_session = bytearray(honest)
    other_session[10] ^= 1  # inside the session id
    refuses(impl, client, bytes(other_session))
    refuses(impl, client, b"SAGG" + bytes(30), "malformed")
    assert client.handle(honest) == reply


def test_client_refuses_too_few_survivors_and_survivors_it_never_heard_of(impl):
    client, honest, reply = advance(impl, HONEST, 0, "unmasking")
    request = m.decode_message(honest)
    refuses(impl, client, m.UnmaskRequest(request.session_id, 0, request.survivors[:2]).encode())
    client2, honest2, reply2 = advance(impl, SHARE_DROP, 0, "unmasking")
    request2 = m.decode_message(honest2)
    with_ghost = np.union1d(request2.survivors, [1])  # client 1 never sent shares
    refuses(impl, client2, m.UnmaskRequest(request2.session_id, 0, with_ghost).encode())
    assert client.handle(honest) == reply
    assert client2.handle(honest2) == reply2


def test_server_asking_for_both_shares_of_one_client_is_refused(impl):
    # After revealing client 2's mask-key share (2 dropped), a request claiming 2 survived
    # (to get its self-mask share too) must be refused.
    client, honest, reply = advance(impl, HONEST, 0, "unmasking")
    assert client.handle(honest) == reply
    request = m.decode_message(honest)
    refuses(impl, client, m.UnmaskRequest(request.session_id, 0, np.union1d(request.survivors, [2])).encode())
    refuses(impl, client, honest)


def test_malicious_mode_refuses_split_survivor_lists_and_bad_signatures(impl):
    u = 4
    client, honest, reply = advance(impl, MALICIOUS, u, "unmasking")
    request = m.decode_message(honest)
    smaller = request.survivors[request.survivors != 6]
    signatures = tuple(s for s in request.signatures if s[0] != 6)
    refuses(impl, client, m.UnmaskRequest(request.session_id, u, smaller, signatures).encode())
    bad = list(request.signatures)
    bad[0] = (bad[0][0], bad[1][1])
    refuses(impl, client, m.UnmaskRequest(request.session_id, u, request.survivors, tuple(bad)).encode())
    refuses(impl, client, m.UnmaskRequest(request.session_id, u, request.survivors, request.signatures[:2]).encode())
    assert client.handle(honest) == reply


# ------------------------------------------------------------------------------ cheating clients

def server_attack(impl, transcript, round_name, attacks):
    """Drive a server through the transcript, launching ``attacks(server)`` at ``round_name``;
    the server must still reproduce every message and the outcome."""

    def hook(server, name):
        if name == round_name:
            attacks(server)

    server, outboxes, error = drive_server(impl, transcript, on_round=hook)
    assert error is None
    for name, outbox in outboxes.items():
        assert outbox == transcript.received(name)
    assert [str(v) for v in server.outcome()[1]] == transcript.data["outcome"]["aggregate"]


def masked_input(transcript, u):
    return m.decode_message(dict(transcript.sent("masked_input"))[u])


def test_server_refuses_bad_masked_inputs(impl):
    def attacks(server):
        honest = masked_input(HONEST, 0)
        refuses(impl, server, m.MaskedInput(honest.session_id, 0, honest.modulus_bits, honest.values[:-1]).encode(),
                "violation", 0)
        wrong_ring = m.MaskedInput(honest.session_id, 0, 31, honest.values & np.uint32(2**31 - 1)).encode()
        refuses(impl, server, wrong_ring, "violation", 0)
        # k = 32: every u32 is in range, so claim a 16-bit ring: the values then exceed 2^16
        encoded = honest.encode()
        refuses(impl, server, encoded[:26] + b"\x10" + encoded[27:], "malformed", 0)

    server_attack(impl, HONEST, "masked_input", attacks)


def test_server_refuses_a_second_message_and_replays(impl):
    def attacks(server):
        first_sender, first = HONEST.sent("masked_input")[0]
        server.receive(first_sender, first)
        refuses(impl, server, first, "violation", first_sender)
        refuses(impl, server, dict(HONEST.sent("share_keys"))[3], "violation", 3)  # old round

    # the honest replay will deliver the first message again: drop it from a copy of the transcript
    data = dict(HONEST.data)
    first = HONEST.sent("masked_input")[0]
    data["messages"] = [e for e in HONEST.data["messages"]
                        if not (e["round"] == "masked_input" and e.get("from") == first[0])]
    server_attack(impl, Transcript(data), "masked_input", attacks)


def test_server_refuses_shares_for_the_wrong_recipients_and_foreign_ids(impl):
    def attacks(server):
        honest = m.decode_message(dict(HONEST.sent("share_keys"))[0])
        wrong = np.where(honest.peers == 4, 0, honest.peers)  # seal to itself instead of client 4
        order = np.argsort(wrong)
        refuses(impl, server, m.ShareKeys(honest.session_id, 0, honest.self_mask_commitment, wrong[order],
                                          honest.ciphertexts[order]).encode(), "violation", 0)
        refuses(impl, server, honest.encode(), "violation", 1)  # sender field says 0, transport says 1
        stranger = m.ShareKeys(honest.session_id, 9, honest.self_mask_commitment, honest.peers, honest.ciphertexts)
        refuses(impl, server, stranger.encode(), "violation", 9)
        other_session = m.ShareKeys(bytes(16), 0, honest.self_mask_commitment, honest.peers, honest.ciphertexts)
        refuses(impl, server, other_session.encode(), "violation", 0)

    server_attack(impl, HONEST, "share_keys", attacks)


# ------------------------------------------------------------------------------ mutation fuzzing

def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    raw = bytearray(data)
    for _ in range(int(rng.integers(1, 4))):
        op = rng.integers(4)
        if op == 0:
            raw[int(rng.integers(len(raw)))] ^= 1 << int(rng.integers(8))
        elif op == 1:
            del raw[int(rng.integers(len(raw))):]
        elif op == 2:
            raw += bytes(rng.integers(0, 256, int(rng.integers(1, 9)), dtype=np.uint8))
        else:
            raw[int(rng.integers(len(raw)))] = int(rng.integers(256))
        if not raw:
            break
    return bytes(raw)


@pytest.mark.parametrize("transcript", [HONEST, MALICIOUS], ids=["honest", "malicious"])
def test_clients_survive_mutated_server_messages(impl, transcript):
    rng = np.random.default_rng(0)
    for u in sorted(transcript.per_client()):
        for round_name in transcript.rounds()[1:]:
            if u not in transcript.received(round_name):
                continue
            client, honest, reply = advance(impl, transcript, u, round_name)
            for _ in range(12):
                bad = mutate(honest, rng)
                try:
                    client.handle(bad)
                except Exception as exc:  # noqa: BLE001
                    kind = impl.error_kind(exc)
                    assert kind in ("malformed", "violation", "abort"), repr(exc)
                    if kind == "abort":  # the mutation decoded as a valid abort notice
                        break
                    continue
                break  # an accepted mutation (e.g. another peer's key): this client's state moved on
            else:
                if reply is not None:
                    assert client.handle(honest) == reply
