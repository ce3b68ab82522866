"""The mutation table: one row per way an implementation can skip, weaken or invert a rule.

Each mutant names the spec rule it breaks (protocols/secagg-v2.md: M = codec, C = client,
S = server, R = the server's round rules, G = randomness) and the source edits that break it in
secagg: ``Edit(target, find, replace)`` replaces the fragment ``find`` (which must occur exactly
once) in the source of the function ``target`` ("module:Qualified.name"). ``kind`` is
"refusal" for a rule that makes a party refuse a message or abort (the score the issue's bar is
about) and "behaviour" for the rules that say what an honest party computes or sends. Run by
:mod:`tests.conformance.mutation`; the list of broken implementations in issue 15 is here too
(``issue15=True``), each of which must be killed.

A mutant that no test can kill carries ``survivor_reason``: why, and why that is acceptable.
"""

from __future__ import annotations

from dataclasses import dataclass, field

CLIENT = "secagg.protocol.client:ClientSession"
SERVER = "secagg.protocol.server"
MESSAGES = "secagg.protocol.messages"


@dataclass(frozen=True)
class Edit:
    target: str
    find: str
    replace: str


@dataclass(frozen=True)
class Mutant:
    id: str
    rule: str
    what: str
    edits: tuple[Edit, ...]
    kind: str = "refusal"
    issue15: bool = False
    survivor_reason: str = ""
    extra_hints: tuple[str, ...] = field(default=())

    def hints(self) -> tuple[str, ...]:
        """Regexes over test node ids, most likely killers first (speed only, not the score)."""
        return (rf"[\[\-]{self.rule}[\-\]]", *self.extra_hints)


BEHAVIOUR = "behaviour"  # marks a rule of what an honest party computes (not a refusal)
ISSUE15 = "issue15"  # marks one of the broken implementations listed in issue 15


def M(id, rule, what, *items, **kw):  # noqa: A002, N802 - a table, read as one
    edits = tuple(Edit(*item) for item in items if isinstance(item, tuple))
    return Mutant(id, rule, what, edits, kind="behaviour" if BEHAVIOUR in items else "refusal",
                  issue15=ISSUE15 in items, **kw)


def client(method: str) -> str:
    return f"{CLIENT}.{method}"


def server(qualname: str) -> str:
    return f"{SERVER}:{qualname}"


def messages(qualname: str) -> str:
    return f"{MESSAGES}:{qualname}"


MUTANTS: list[Mutant] = [
    # ------------------------------------------------------------------ codec (section 6)
    M("M1-magic", "M1", "accept any 4-byte magic",
      (messages("decode_message"), "if magic != MAGIC:", "if False:")),
    M("M1-short", "M1", "no length check before reading the header",
      (messages("decode_message"), "if len(data) < _HEADER.size:", "if False:")),
    M("M2-version", "M2", "accept another protocol version",
      (messages("decode_message"), "if version != VERSION:", "if False:")),
    M("M3-type", "M3", "read an unknown message type as an AbortNotice",
      (messages("decode_message"), "kind = MessageType(kind)", "kind = MessageType(kind if 1 <= kind <= 10 else 10)")),
    M("M4-truncated", "M4", "read past the end as zero bytes",
      (messages("_Reader.take"),
       "if n < 0 or self.pos + n > len(self.data):\n            raise MalformedMessage(",
       "if n < 0 or self.pos + n > len(self.data):\n            self.data = self.data + bytes(self.pos + n - len(self.data))\n"
       "        if False:\n            raise MalformedMessage(")),
    M("M4-count", "M4", "trust a count that exceeds the message length: read what is there",
      (messages("_Reader.count"), "if count * entry_bytes > len(self.data) - self.pos:", "if False:"),
      (messages("_Reader.records"),
       "if count * dtype.itemsize > len(self.data) - self.pos:\n            raise MalformedMessage(",
       "count = min(count, (len(self.data) - self.pos) // dtype.itemsize)\n        if False:\n"
       "            raise MalformedMessage(")),
    M("M5-trailing", "M5", "ignore trailing bytes",
      (messages("_Reader.end"), "if self.pos != len(self.data):", "if False:")),
    M("M6-flag", "M6", "read any nonzero flag byte as 1",
      (messages("_Reader.flag"), "if value > 1:", "if False:")),
    M("M7-id-lists", "M7", "accept id lists that are not strictly increasing",
      (messages("_id_array"), "if array.size > 1 and np.any(array[1:] <= array[:-1]):", "if False:")),
    M("M7-entries-signers", "M7", "accept key directory entries or consistency signers out of order",
      (messages("_increasing"), "if b <= a:", "if False:")),
    M("M8-canonical", "M8", "accept non-canonical X25519 encodings (u >= 2^255 - 19)",
      (messages("_public_key"), 'if int.from_bytes(key, "little") >= _X25519_P:', "if False:")),
    M("M9-holds-itself", "M9", "accept a holder list that contains its own client",
      (messages("KeyEntry.__post_init__"), "if holders.size and np.any(holders == self.client_id):", "if False:")),
    M("M10-index", "M10", "accept a leaf index outside the tree",
      (messages("Transcript.__post_init__"), "if not 0 <= index < size:", "if False:")),
    M("M10-path-length", "M10", "accept an audit path of another length",
      (messages("Transcript.__post_init__"), "if len(path) != audit_path_length(index, size):", "if False:")),
    M("M11-empty-signed", "M11", "accept an empty key directory flagged as signed",
      (messages("_decode_body"), "if signed and count == 0:", "if False:")),
    M("M12-bits", "M12", "accept a ring size outside 1..64 (clamped)",
      (messages("_decode_body"), "if not MIN_BITS <= bits <= MAX_BITS:", "if False:"),
      (messages("_decode_body"), "ring = Ring(bits)", "ring = Ring(min(max(bits, MIN_BITS), MAX_BITS))"),
      (messages("MaskedInput.__post_init__"), "not MIN_BITS <= bits <= MAX_BITS:", "False:"),
      (messages("MaskedInput.__post_init__"), "ring = Ring(int(bits))", "ring = Ring(min(max(int(bits), 1), 64))")),
    M("M12-values", "M12", "accept masked values >= 2^k",
      (messages("_decode_body"), "if not ring.in_range(values):", "if False:"),
      (messages("MaskedInput.__post_init__"), "if not ring.in_range(values.astype(ring.dtype, copy=False)):",
       "if False:")),
    M("M13-limb", "M13", "accept revealed share limbs >= p",
      (messages("_share_table"), "if table.size and (int(table.min()) < 0 or int(table.max()) >= FIELD_PRIME):",
       "if False:")),
    M("M13-both-kinds", "M13", "accept an owner among both self-mask and mask-key shares",
      (messages("UnmaskingShares.__post_init__"), "if np.intersect1d(b_owners, s_owners).size:", "if False:")),
    M("M14-length", "M14", "accept an abort reason longer than 1024 bytes",
      (messages("_decode_body"), "if len(raw) > MAX_ABORT_REASON_BYTES:", "if False:"),
      (messages("AbortNotice.__post_init__"), 'if len(self.reason.encode("utf-8")) > MAX_ABORT_REASON_BYTES:',
       "if False:")),
    M("M14-utf8", "M14", "decode an abort reason leniently (invalid UTF-8 replaced)",
      (messages("_decode_body"), 'reason = raw.decode("utf-8", errors="strict")',
       'reason = raw.decode("utf-8", errors="replace")')),

    # ------------------------------------------------------------------ client (section 8)
    M("C0-randomness-first", "C0", "draw the self-mask seed before checking the key directory",
      (client("_on_key_directory"), "self_mask_seed = self._rng.random_bytes(SEED_BYTES)", "pass"),
      (client("_on_key_directory"), "entries = {e.client_id: e for e in message.entries}",
       "self_mask_seed = self._rng.random_bytes(SEED_BYTES)\n        entries = {e.client_id: e for e in message.entries}"),
      extra_hints=(r"\[C1[0-6]-", r"\[C[4-9]-")),
    M("C2-direction", "C2", "handle a client-to-server message as if the server had sent it",
      (client("_check_addressing"), "if message.FROM_CLIENT:", "if False:"),
      survivor_reason=("equivalent here: the state dispatch (the rest of C2) has handlers for server-to-client types only, "
                             "so a client-to-server message is refused with or without this check")),
    M("C1-session", "C1", "accept a message of another session",
      (client("_check_addressing"), "if message.session_id != self.session_id:", "if False:")),
    M("C1-recipient", "C1", "accept a message addressed to another client",
      (client("_check_addressing"), "if message.party != self.client_id:", "if False:")),
    M("C2-any-state", "C2", "dispatch by message type whatever the state",
      (client("handle"), "handler = self._handlers.get((self.state, type(message)))",
       "handler = next((h for (s, kind), h in self._handlers.items() if kind is type(message)), None)")),
    M("C2-second-unmask", "C2", "answer a second unmask request (the state stays awaiting it)",
      (client("_on_unmask_request"), "self._held_shares = None\n        self.state = ClientState.DONE",
       "self.state = self.state")),
    M("C3-ignore-notice", "C3", "refuse an AbortNotice as an unexpected message",
      (client("handle"), "if isinstance(message, AbortNotice):", "if isinstance(message, AbortNotice) and False:")),
    M("C3-notice-after-answer", "C3", "refuse an AbortNotice once the unmasking answer is out",
      (client("handle"), "if self.state is ClientState.ABORTED:",
       "if self.state in (ClientState.DONE, ClientState.ABORTED):")),
    M("C3-keep-going", "C3", "stay in the session after an AbortNotice",
      (client("handle"), "self.state = ClientState.ABORTED\n", "pass\n")),
    M("C4-own-entry", "C4", "accept a directory that misstates the client's own entry",
      (client("_on_key_directory"), "if own is None or sent is None or own != sent.entry:",
       "if own is None or sent is None:")),
    M("C4-own-missing", "C4", "accept a directory without the client's own entry",
      (client("_on_key_directory"), "if own is None or sent is None or own != sent.entry:",
       "if sent is None or (own is not None and own != sent.entry):")),
    M("C5-transcript", "C5", "skip the transcript audit path check",
      (client("_on_key_directory"), "if d.transcript_root_from_path(d.transcript_leaf(sent.encode()), message.transcript) != \\",
       "if False and d.transcript_root_from_path(d.transcript_leaf(sent.encode()), message.transcript) != \\")),
    M("C6-unknown-id", "C6", "accept a directory entry with an id >= n", ISSUE15,
      (client("_on_key_directory"), "if client_id >= n:", "if False:")),
    M("C7-holders-complete", "C7", "accept directory entries listing holders in the complete graph",
      (client("_on_key_directory"), "if entry.holders.size:", "if False:")),
    M("C8-holder-count", "C8", "accept a SecAgg+ entry with another number of holders than K",
      (client("_on_key_directory"), "if entry.holders.size != self.config.neighbors:", "if False:")),
    M("C9-holder-id", "C9", "accept a SecAgg+ entry that drew a holder id >= n",
      (client("_on_key_directory"), "if int(entry.holders.max()) >= n:", "if False:")),
    M("C10-stranger", "C10", "accept a SecAgg+ entry that neither holds for the client nor drew it", ISSUE15,
      (client("_on_key_directory"), "elif not np.any(drawn == client_id):", "elif False:")),
    M("C11-duplicate-key", "C11", "accept a key that appears twice in the directory",
      (client("_on_key_directory"), "if fingerprint in seen:", "if False:")),
    M("C11-duplicate-bytes", "C11", "compare keys by their bytes, not by their agreement (u and 1/u pass)",
      (client("_on_key_directory"), "if fingerprint in seen:", "if key in seen:"),
      (client("_on_key_directory"), "seen.add(fingerprint)", "seen.add(key)")),
    M("C11-peers-only", "C11", "look for repeated keys among the peers' entries only, not the client's own",
      (client("_on_key_directory"), "            for key in (e.cipher_public_key, e.mask_public_key):\n",
       "            for key in ((e.cipher_public_key, e.mask_public_key) if e.client_id != me else ()):\n")),
    M("C12-low-order", "C12", "accept low-order peer keys (all-zero agreements used as keys)",
      (client("_on_key_directory"),
       "except CryptoError as exc:\n                    raise _violation(f\"unusable public key of client {e.client_id}: {exc}\") from None",
       "except CryptoError:\n                    fingerprint = bytes(key)"),
      (client("_on_key_directory"),
       "except CryptoError as exc:\n                raise _violation(f\"unusable public key of client {peer}: {exc}\") from None",
       "except CryptoError:\n                cipher_secret = bytes(32)\n                mask_secrets[peer] = bytes(32)")),
    M("C4-unsigned", "C4", "accept an unsigned directory in malicious mode",
      (client("_on_key_directory"), "if e.signature is None:\n                    raise",
       "if e.signature is None:\n                    continue\n                    raise"),
      survivor_reason=("equivalent: a directory has one signed flag and the own entry must carry the signature the client "
                             "sent, so an unsigned directory already fails the own-entry comparison of C4")),
    M("C13-bad-signature", "C13", "skip the verification of the directory's signatures",
      (client("_on_key_directory"), "verify_signature(self._verify_keys[e.client_id], e.signature,",
       "(lambda *args: None)(self._verify_keys[e.client_id], e.signature,")),
    M("C4-signed-honest", "C4", "accept a signed directory in honest-but-curious mode",
      (client("_on_key_directory"), "elif message.signed:", "elif False:"),
      survivor_reason=("equivalent: the client sent no signature, so a signed directory already fails the own-entry "
                             "comparison of C4")),
    M("C14-few-holders", "C14", "accept a directory with fewer than t of the client's holders",
      (client("_on_key_directory"), "if holders.size < t:", "if False:")),
    M("C14-counts-itself", "C14", "count the client itself among its holders",
      (client("_on_key_directory"), "if holders.size < t:", "if holders.size + 1 < t:")),
    M("C14-all-listed", "C14", "count every listed client as a holder (SecAgg+ owners too)",
      (client("_on_key_directory"), "holders = others if drawn is None else others[np.isin(others, drawn)]\n        if holders.size < t:",
       "holders = others if drawn is None else others[np.isin(others, drawn)]\n        if others.size < t:")),
    M("C15-live-holder", "C15", "accept a live holder the client did not seal shares to",
      (client("_on_share_bundles"), "if not np.all(np.isin(live_holders, self._holders)):", "if False:")),
    M("C16-few-live", "C16", "accept fewer than t live holders",
      (client("_on_share_bundles"), "if live_holders.size < t:", "if False:")),
    M("C16-boundary", "C16", "accept t - 1 live holders",
      (client("_on_share_bundles"), "if live_holders.size < t:", "if live_holders.size < t - 1:")),
    M("C17-non-owner", "C17", "accept (reject, not refuse) a bundle from a client that did not draw this one",
      (client("_on_share_bundles"), "if key is None:\n                raise _violation(",
       "if key is None:\n                rejected.append(sender)\n                continue\n                raise _violation(")),
    M("C18-refuse-bad-bundle", "C18", "refuse the whole message when a bundle does not open", BEHAVIOUR,
      (client("_on_share_bundles"), "rejected.append(sender)\n                continue",
       "raise _violation(f'bundle from {sender} does not open')")),
    M("C18-unreported", "C18", "drop a bundle that does not open without reporting it", BEHAVIOUR,
      (client("_on_share_bundles"), "rejected.append(sender)\n                continue", "continue")),
    M("C18-no-mask", "C18", "stop masking with a sender whose bundle was rejected", BEHAVIOUR,
      (client("_on_share_bundles"), "partners = np.union1d(live_holders, senders)",
       "partners = np.union1d(live_holders, np.setdiff1d(senders, rejected))")),
    M("C19-names", "C19", "keep a bundle whose plaintext names another sender or receiver", BEHAVIOUR,
      (client("_on_share_bundles"), "if (claimed_sender, claimed_recipient) != (sender, client_id):", "if False:")),
    M("C20-limb", "C20", "keep a bundle with a share limb >= p", BEHAVIOUR, ISSUE15,
      ("secagg.protocol.derivation:parse_share_plaintext", "if int(limbs.max()) >= FIELD_PRIME:", "if False:")),
    M("C21-unknown-survivor", "C21", "accept a survivor list naming an id >= n",
      (client("_check_survivors"), "if survivors.size and int(survivors[-1]) >= self.config.num_clients:", "if False:")),
    M("C22-omits-client", "C22", "accept a survivor list without this client",
      (client("_check_survivors"), "if not np.any(survivors == self.client_id):", "if False:")),
    M("C23-gone-partner", "C23", "accept a survivor list naming a partner that left before the masked inputs",
      (client("_check_survivors"), "if not np.all(np.isin(named, live)):", "if False:")),
    M("C23-holders-only", "C23", "check only the holders in the survivor list, not the owners",
      (client("_check_survivors"), "partners = np.union1d(self._holders, self._owners)", "partners = self._holders")),
    M("C24-few-kept", "C24", "accept a survivor list leaving fewer than t live holders", ISSUE15,
      (client("_check_survivors"), "if kept < self.config.threshold:", "if False:")),
    M("C24-counts-itself", "C24", "count the client itself among the holders the survivor list keeps",
      (client("_check_survivors"), "if kept < self.config.threshold:", "if kept + 1 < self.config.threshold:")),
    M("C25-other-list", "C25", "reveal for a survivor list other than the one signed",
      (client("_on_unmask_request"),
       "if self._signed_survivors is None or not np.array_equal(survivors, self._signed_survivors):",
       "if self._signed_survivors is None:")),
    M("C26-non-survivor-signer", "C26", "accept consistency signatures from non-survivors",
      (client("_on_unmask_request"), "if signer >= self.config.num_clients or not np.any(survivors == signer):",
       "if signer >= self.config.num_clients:")),
    M("C27-bad-signature", "C27", "skip the verification of the consistency signatures",
      (client("_on_unmask_request"), "verify_signature(self._verify_keys[signer], signature, payload)",
       "pass")),
    M("C27-own-root", "C27", "verify consistency signatures without the transcript root",
      (client("_on_unmask_request"),
       "payload = d.consistency_payload(self.session_id, self._transcript_root, survivors)",
       "payload = d.consistency_payload(self.session_id, b'', survivors)"),
      (client("_on_consistency_request"), "self.session_id, self._transcript_root, message.survivors)",
       "self.session_id, b'', message.survivors)")),
    M("C28-few-signatures", "C28", "reveal with fewer than t signatures from live holders",
      (client("_on_unmask_request"), "if valid_from_holders < self.config.threshold:", "if False:")),
    M("C28-any-signer", "C28", "count every survivor's signature, not only the live holders'",
      (client("_on_unmask_request"), "valid_from_holders += bool(np.any(self._live_holders == signer))",
       "valid_from_holders += 1")),
    M("C28-boundary", "C28", "reveal with t - 1 signatures from live holders",
      (client("_on_unmask_request"), "if valid_from_holders < self.config.threshold:",
       "if valid_from_holders < self.config.threshold - 1:")),
    M("C29-signed-honest", "C29", "accept an honest-mode unmask request carrying signatures", ISSUE15,
      (client("_on_unmask_request"), "if message.signatures:", "if False:")),
    M("C29-unchecked-honest", "C21", "skip the survivor-list checks of an honest-mode unmask request",
      (client("_on_unmask_request"), "            self._check_survivors(survivors)\n", "            pass\n"),
      extra_hints=(r"\[C2[3-6]-",)),
    M("C30-reveal-both", "C30", "reveal the self-mask share of every owner, survivor or not", BEHAVIOUR,
      (client("_on_unmask_request"), "alive = np.isin(held_owners, survivors)",
       "alive = np.ones(held_owners.size, dtype=bool)")),

    # ------------------------------------------------------------------ server (section 9)
    M("S0-accept-first", "S0", "count a message before validating it (a refused message still uses the slot)",
      (server("ServerSession.receive"), "round_state.validate(sender, message)\n        round_state.accept(sender, message)",
       "round_state.received[sender] = message\n        round_state.validate(sender, message)\n"
       "        round_state.accept(sender, message)"),
      extra_hints=(r"\[S",)),
    M("S3-direction", "S3", "take a server-to-client message from a client",
      (server("ServerSession.receive"), "if not message.FROM_CLIENT:", "if False:"),
      survivor_reason=("equivalent here: no round expects a server-to-client type, so the type check of S3 refuses it with "
                             "or without this check")),
    M("S1-spoofed-sender", "S1", "trust the sender field over the transport's client id",
      (server("ServerSession.receive"), "if sender != client_id:", "if False:")),
    M("S2-session", "S2", "accept a message of another session",
      (server("ServerSession.receive"), "if message.session_id != self.session_id:", "if False:")),
    M("S4-unknown", "S4", "accept a sender id >= n",
      (server("ServerSession.receive"), "if not 0 <= sender < self.config.num_clients:", "if False:"),
      survivor_reason=("equivalent: every expected set holds ids below n only, so the expected-set check of S4 refuses an "
                             "unknown id with or without this check (which only words the error)")),
    M("S3-type", "S3", "accept a message of another round's type",
      (server("ServerSession.receive"), "if not isinstance(message, round_state.message_type):", "if False:")),
    M("S4-not-expected", "S4", "accept a client that is not part of the round",
      (server("ServerSession.receive"), "if sender not in round_state.expected:", "if False:")),
    M("S5-second", "S5", "accept a second message from one client in a round (the last one wins)",
      (server("ServerSession.receive"), "if sender in round_state.received:", "if False:")),
    M("S6-low-order", "S6", "accept low-order advertised keys", ISSUE15,
      (server("_AdvertiseKeysRound._fingerprints"), "out.append(self.probe.exchange(key))\n            except CryptoError:\n                raise",
       "out.append(self.probe.exchange(key))\n            except CryptoError:\n                out.append(bytes(key))\n                continue\n                raise")),
    M("S7-same-key", "S7", "accept c_pk = s_pk",
      (server("_AdvertiseKeysRound.validate"), "if cipher == mask:", "if False:")),
    M("S8-duplicate", "S8", "accept a key another client already advertised", ISSUE15,
      (server("_AdvertiseKeysRound.validate"), "if fingerprint in self.key_owner:", "if False:")),
    M("S8-duplicate-bytes", "S8", "compare advertised keys by their bytes (u and 1/u pass)",
      (server("_AdvertiseKeysRound._fingerprints"), "out.append(self.probe.exchange(key))",
       "self.probe.exchange(key)\n                out.append(bytes(key))")),
    M("S9-holders-complete", "S9", "accept holders in the complete graph",
      (server("_AdvertiseKeysRound.validate"), "if not cfg.is_sparse and holders.size:", "if False:")),
    M("S10-holder-count", "S10", "accept a SecAgg+ draw of another size than K",
      (server("_AdvertiseKeysRound.validate"), "holders.size != cfg.neighbors or int(holders[-1]) >= cfg.num_clients",
       "holders.size and int(holders[-1]) >= cfg.num_clients")),
    M("S11-holder-id", "S11", "accept a SecAgg+ holder id >= n",
      (server("_AdvertiseKeysRound.validate"), "holders.size != cfg.neighbors or int(holders[-1]) >= cfg.num_clients",
       "holders.size != cfg.neighbors")),
    M("S12-signed-honest", "S12", "accept signed keys in honest-but-curious mode",
      (server("_AdvertiseKeysRound.validate"), "if message.signature is not None:\n                raise",
       "if False:\n                raise")),
    M("S13-unsigned", "S13", "accept unsigned keys in malicious mode",
      (server("_AdvertiseKeysRound.validate"), "if message.signature is None:\n            raise",
       "if message.signature is None:\n            return\n            raise")),
    M("S14-bad-signature", "S14", "skip the AdvertiseKeys signature check", ISSUE15,
      (server("_AdvertiseKeysRound.validate"), "verify_signature(self.ctx.verify_keys[sender], message.signature,",
       "(lambda *args: None)(self.ctx.verify_keys[sender], message.signature,")),
    M("S15-recipients", "S15", "accept ShareKeys sealed to other clients than the sender's holders",
      (server("_ShareKeysRound.validate"), "if not np.array_equal(message.peers, holders[np.isin(holders, self.graph.members)]):",
       "if False:")),
    M("S15-subset", "S15", "accept ShareKeys sealed to a subset of the sender's holders",
      (server("_ShareKeysRound.validate"), "if not np.array_equal(message.peers, holders[np.isin(holders, self.graph.members)]):",
       "if not np.all(np.isin(message.peers, holders[np.isin(holders, self.graph.members)])):")),
    M("S15-drawn", "S15", "expect bundles for every drawn holder, also those no longer in U1",
      (server("_ShareKeysRound.validate"), "if not np.array_equal(message.peers, holders[np.isin(holders, self.graph.members)]):",
       "if not np.array_equal(message.peers, holders):")),
    M("S16-ring", "S16", "accept a masked input in another ring",
      (server("_MaskedInputRound.validate"), "if message.modulus_bits != cfg.modulus_bits:", "if False:")),
    M("S17-length", "S17", "accept a masked input of another length",
      (server("_MaskedInputRound.validate"), "if message.values.size != cfg.vector_length:", "if False:")),
    M("S18-reports", "S18", "accept reports of bundles the reporter never received",
      (server("_MaskedInputRound.validate"), "if not np.all(np.isin(message.rejected, self.held[sender])):", "if False:")),
    M("S18-any-live", "S18", "accept reports naming any client of U2, not only the reporter's senders",
      (server("_MaskedInputRound.validate"), "if not np.all(np.isin(message.rejected, self.held[sender])):",
       "if not np.all(np.isin(message.rejected, list(self.partners))):")),
    M("S19-consistency-signature", "S19", "skip the ConsistencySignature verification", ISSUE15,
      (server("_ConsistencyRound.validate"), "verify_signature(self.ctx.verify_keys[sender], message.signature, self.payload)",
       "pass")),
    M("S20-self-mask-owners", "S20", "accept self-mask shares of other owners than expected", ISSUE15,
      (server("_UnmaskingRound.validate"), "if not np.array_equal(message.self_mask_owners, held[alive]):", "if False:")),
    M("S21-mask-key-owners", "S21", "accept mask-key shares of other owners than expected", ISSUE15,
      (server("_UnmaskingRound.validate"), "if not np.array_equal(message.mask_key_owners, held[~alive]):", "if False:")),

    # ------------------------------------------------------------------ server rounds (section 5)
    M("R1-never-closes", "R1", "wait for the driver even when every expected message arrived", BEHAVIOUR,
      (server("ServerSession.receive"), "if round_state.received.keys() >= round_state.expected:", "if False:"),
      extra_hints=("complete-no-dropout",)),
    M("R1-closes-early", "R1", "close a round one message before the last expected one", BEHAVIOUR,
      (server("ServerSession.receive"), "if round_state.received.keys() >= round_state.expected:",
       "if len(round_state.received) + 1 >= len(round_state.expected):"),
      extra_hints=("complete-no-dropout",)),
    M("R2-no-prune-advertise", "R2", "skip the pruning when round 0 closes", BEHAVIOUR, ISSUE15,
      (server("_AdvertiseKeysRound.close"), "alive = graph.prune(set(self.received), cfg.threshold)",
       "alive = set(self.received)"),
      extra_hints=("pruning",)),
    M("R2-no-prune-share-keys", "R2", "skip the pruning when round 1 closes", BEHAVIOUR, ISSUE15,
      (server("_ShareKeysRound.close"), "alive = self.graph.prune(set(self.received), cfg.threshold)",
       "alive = set(self.received)"),
      extra_hints=("pruning",)),
    M("R2-no-cascade", "R2", "prune once instead of until no client is left to remove", BEHAVIOUR,
      ("secagg.protocol.graph:HolderGraph.prune", "if count[owner] == threshold - 1:", "if False:"),
      extra_hints=("pruning",)),
    M("R2-boundary", "R2", "keep clients with t - 1 holders when pruning",
      ("secagg.protocol.graph:HolderGraph.prune", "return alive if len(alive) - 1 >= threshold else set()",
       "return alive if len(alive) >= threshold else set()"),
      ("secagg.protocol.graph:HolderGraph.prune", "queue = [u for u, c in count.items() if c < threshold]",
       "queue = [u for u, c in count.items() if c < threshold - 1]"),
      ("secagg.protocol.graph:HolderGraph.prune", "if count[owner] == threshold - 1:", "if count[owner] == threshold - 2:"),
      extra_hints=("pruning", "abort")),
    M("R3-abort-advertise", "R3", "go on when no client keeps t holders after round 0",
      (server("_AdvertiseKeysRound.close"), "if not alive:", "if not self.received:"),
      extra_hints=("abort-advertise",)),
    M("R3-directory-owners", "R3", "list only the recipient's holders in a SecAgg+ directory, not its owners", BEHAVIOUR,
      (server("_AdvertiseKeysRound.close"), "*graph.owners(u).tolist()}", "}"), extra_hints=("secagg-plus",)),
    M("R4-abort-share-keys", "R4", "go on when no client keeps t holders after round 1",
      (server("_ShareKeysRound.close"), "if not alive:", "if not self.received:"), extra_hints=("abort-share-keys",)),
    M("R5-abort-none", "R5", "go on (sum of nothing) when no masked input arrived",
      (server("_MaskedInputRound.close"), "if not survivors.size:\n            raise", "if False:\n            raise"),
      extra_hints=("abort-masked-input",)),
    M("R5-abort-short", "R5", "go on when a client to unmask has fewer than t valid holders left",
      (server("_MaskedInputRound.close"), "if short.size:", "if False:"), extra_hints=("abort",)),
    M("R5-boundary", "R5", "go on when a client to unmask has t - 1 valid holders left",
      (server("_MaskedInputRound.close"), "short = needed[count[needed] < cfg.threshold]",
       "short = needed[count[needed] < cfg.threshold - 1]"), extra_hints=("abort",)),
    M("R5-dropped-unchecked", "R5", "check only the survivors' holders, not those of the dropped partners",
      (server("_MaskedInputRound.close"), "needed = np.concatenate([survivors, dropped])", "needed = survivors"),
      extra_hints=("abort",)),
    M("R5-reports-ignored", "R5", "count holders whose bundle was rejected as valid holders",
      (server("_MaskedInputRound.close"), "valid_held = {v: np.setdiff1d(self.held[v], self.rejected[v]) for v in survivors.tolist()}",
       "valid_held = {v: self.held[v] for v in survivors.tolist()}"), extra_hints=("abort", "bundle")),
    M("R6-all-signers", "R6", "send UnmaskRequest to every signer, even without t signing holders",
      (server("_ConsistencyRound.close"),
       "if int(np.isin(carry.holders[u], list(signers)).sum()) >= ctx.config.threshold]", "]"),
      extra_hints=("malicious",)),
    M("R6-boundary", "R6", "ask signers with t - 1 signing holders to unmask",
      (server("_ConsistencyRound.close"), "if int(np.isin(carry.holders[u], list(signers)).sum()) >= ctx.config.threshold]",
       "if int(np.isin(carry.holders[u], list(signers)).sum()) >= ctx.config.threshold - 1]"),
      extra_hints=("malicious",)),
    M("R7-highest-holders", "R7", "reconstruct from the t highest responding holders, not the t lowest", BEHAVIOUR, ISSUE15,
      (server("_UnmaskingRound._reconstruct"), "rows = starts[:, None] + np.arange(t)[None, :]",
       "rows = (starts + counts - t)[:, None] + np.arange(t)[None, :]"), extra_hints=("wrong-share",)),
    M("R7-no-commitment", "R7", "skip the commitment check of reconstructed self-mask seeds", ISSUE15,
      (server("_UnmaskingRound.close"),
       "lambda owner, secret: d.self_mask_commitment(\n            ctx.session_id, owner, secret) == carry.commitments[owner])",
       "lambda owner, secret: True)"), extra_hints=("wrong",)),
    M("R7-no-public-key", "R7", "skip the public-key check of reconstructed mask keys", ISSUE15,
      (server("_UnmaskingRound.close"),
       "lambda owner, secret: AgreementKey.from_private_bytes(\n            secret).public_bytes == carry.keys[owner].mask_public_key)",
       "lambda owner, secret: True)"), extra_hints=("wrong",)),
    M("R7-too-few", "R7", "reconstruct from fewer than t shares",
      (server("_UnmaskingRound._reconstruct"), "if np.any(available < t):", "if False:"), extra_hints=("abort",)),
    M("R7-boundary", "R7", "reconstruct from t - 1 shares (the t-th row from the next owner)",
      (server("_UnmaskingRound._reconstruct"), "if np.any(available < t):", "if np.any(available < t - 1):"),
      extra_hints=("abort",)),
    M("R7-undecodable", "R7", "output a sum when the shares cannot be corrected (an unchecked secret)",
      (server("_UnmaskingRound._reconstruct"), "if decoded is None:\n                raise",
       "if decoded is None:\n                secrets[owner] = bytes(32)\n                pending = np.array(failed[1:], dtype=np.int64)\n"
       "                continue\n                raise"), extra_hints=("abort", "wrong")),
    M("R7-no-exclusion", "R7", "keep using the shares of a holder found misbehaving", BEHAVIOUR,
      (server("_UnmaskingRound._reconstruct"), "usable = ~np.isin(holder_all, list(self.ctx.misbehaving)) & np.isin(owner_all, pending)",
       "usable = np.isin(owner_all, pending)"), extra_hints=("liars", "wrong")),
    M("R7-no-leave-one-out", "R7", "correct only with Berlekamp-Welch (no single error found when r < t + 2)", BEHAVIOUR,
      ("secagg.crypto.shamir:decode_with_errors", "if check is not None and r > threshold:", "if False:"),
      extra_hints=("liars", "wrong")),
    M("R8-no-reports", "R8", "leave the rejected bundles out of the result", BEHAVIOUR,
      (server("_MaskedInputRound.accept"), "self.ctx.reports.extend((sender, int(o)) for o in rejected.tolist())",
       "pass"), extra_hints=("bundle",)),
    M("R9-no-notices", "R9", "send no AbortNotice when a round's close rule fails", BEHAVIOUR,
      (server("ServerSession._mark_aborted"), "self.abort_notices = encode_broadcast(notice, sorted(self._round.expected))",
       "self.abort_notices = {}"), extra_hints=("abort",)),
    M("R9-notices-to-received", "R9", "send AbortNotices only to the clients whose message arrived", BEHAVIOUR,
      (server("ServerSession._mark_aborted"), "sorted(self._round.expected)", "sorted(self._round.received)"),
      extra_hints=("abort",)),

    # ------------------------------------------------------------------ randomness (section 7)
    M("G1-holder-draw", "G1", "no rejection in the holder draw (modulo bias)", BEHAVIOUR,
      ("secagg.protocol.graph:draw_holders", "if word < limit:", "if True:"), extra_hints=("holder_draws",)),
    M("G1-even-k", "G1", "draw an even number of holders (K - 1 for odd K)", BEHAVIOUR, ISSUE15,
      (client("start"), "self.config.num_clients, self.config.neighbors, self._rng)",
       "self.config.num_clients, self.config.neighbors - self.config.neighbors % 2, self._rng)"),
      extra_hints=("odd",)),
    M("G2-shamir-rejection", "G2", "no rejection of the coefficient word p", BEHAVIOUR, ISSUE15,
      ("secagg.crypto.shamir:random_field_elements", "while rejected.size:", "while False:"),
      extra_hints=("shamir", "rejection")),
    M("G2-shamir-inline", "G2", "re-draw each rejected coefficient at once (the other reading of section 7)", BEHAVIOUR,
      ("secagg.crypto.shamir:random_field_elements",
       "values = np.frombuffer(rng.random_bytes(4 * count), dtype=\"<u4\") & np.uint32(0x7FFFFFFF)",
       "values = np.empty(count, dtype=np.uint32)\n    for i in range(count):\n        while True:\n"
       "            values[i] = int.from_bytes(rng.random_bytes(4), 'little') & 0x7FFFFFFF\n"
       "            if values[i] != FIELD_PRIME:\n                break"),
      extra_hints=("shamir", "rejection")),
]

IDS = [m.id for m in MUTANTS]
assert len(set(IDS)) == len(IDS), "duplicate mutant ids"

# Every `raise` in secagg/protocol/ that no mutant touches, and why it is not a rule of its own
# (file, function, the raise statement's first characters, reason). tests/conformance/
# test_mutation.py checks that this list and the table above cover every raise, and that no
# entry here is stale.
_CALLER = ("a caller error (the local program used the library wrongly), not a refusal of a peer's message: the "
           "spec's error kinds are about peers")
_LOCAL = ("reachable only when a message is built locally: the decoder hands over fixed-length fields, u32 ids, "
          "one signed flag per directory, a reason already decoded from UTF-8")
_RERAISE = "re-raises a refusal or abort already raised, naming the blamed party or marking the session aborted"
NOT_MUTATED: list[tuple[str, str, str, str]] = [
    ("client.py", "check_session_id", "raise ParameterError", _CALLER),
    ("client.py", "check_verify_keys", "raise ParameterError", _CALLER),
    ("client.py", "__init__", "raise ParameterError", _CALLER),
    ("client.py", "start", "raise SessionStateError", _CALLER),
    ("client.py", "handle", "raise SessionStateError", _CALLER + " (handle before start)"),
    ("client.py", "handle", "raise", _RERAISE),
    ("client.py", "_on_unmask_request", "raise SessionStateError",
     "unreachable: the client is in AWAIT_UNMASK_REQUEST only after round 2 stored its held shares (a narrowing "
     "for the type checker)"),
    ("server.py", "close", "raise NotImplementedError", "an abstract method"),
    ("server.py", "__init__", "raise ParameterError", _CALLER),
    ("server.py", "receive", "raise", _RERAISE),
    ("server.py", "_close", "raise", _RERAISE),
    ("server.py", "_close", "raise AbortError",
     "defensive: every advertised key was checked in round 0 (S6), so no key agreement fails later"),
    ("server.py", "_require_open", "raise SessionStateError", _CALLER + " (a session that ended)"),
    ("messages.py", "_bytes", "raise ParameterError", _LOCAL),
    ("messages.py", "_id", "raise ParameterError", _LOCAL),
    ("messages.py", "_id_array", "raise ParameterError", _LOCAL),
    ("messages.py", "party", "raise NotImplementedError", "an abstract property"),
    ("messages.py", "_body", "raise NotImplementedError", "an abstract method"),
    ("messages.py", "_sealed_table", "raise ParameterError", _LOCAL),
    ("messages.py", "__post_init__", "raise ParameterError(\"entries must contain", _LOCAL),
    ("messages.py", "__post_init__", "raise ParameterError(\"either every entry", _LOCAL),
    ("messages.py", "__post_init__", "raise ParameterError(\"transcript must be", _LOCAL),
    ("messages.py", "__post_init__", "raise ParameterError(f\"values dtype", _LOCAL),
    ("messages.py", "__post_init__", "raise ParameterError(\"too many values", _LOCAL),
    ("messages.py", "__post_init__", "raise ParameterError(\"reason must be", _LOCAL),
    ("messages.py", "_share_table", "raise ParameterError", _LOCAL),
    ("messages.py", "encode_broadcast", "raise ParameterError", _LOCAL),
    ("messages.py", "encode_key_directories", "raise ParameterError", _LOCAL),
    ("messages.py", "_decode_body", "raise MalformedMessage(f\"unknown message type",
     "unreachable: the type byte was checked (M3) before the body is read"),
    ("messages.py", "decode_message", "raise MalformedMessage(f\"a message is bytes", _CALLER + " (not bytes)"),
    ("messages.py", "decode_message", "raise MalformedMessage(str(exc))",
     "turns a field check into malformed: the mechanism of M7 to M13, each mutated in its own check"),
    ("derivation.py", "parse_share_plaintext", "raise ParameterError(f\"share plaintext has",
     "unreachable: a 96-byte sealed bundle that opens always yields 80 bytes"),
    ("derivation.py", "__init__", "raise ParameterError(\"a transcript tree needs",
     "unreachable: R3 aborts before a tree over no client is built"),
    ("graph.py", "_take", "raise ParameterError", _CALLER + " (its random source)"),
    ("graph.py", "choose_graph_parameters", "raise ParameterError", _CALLER + " (choosing parameters)"),
    ("graph.py", "complete_graph_threshold", "raise ParameterError", _CALLER + " (choosing parameters)"),
]
