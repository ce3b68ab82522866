"""The server side: a Flower fit workflow that aggregates the round's updates with secagg's masking.

It takes the place of Flower's ``SecAggPlusWorkflow`` in ``DefaultWorkflow(fit_workflow=...)``:
the strategy picks the clients and their fit instructions (``configure_fit``) and gets the result
(``aggregate_fit``); in between, the workflow drives one :class:`ServerSession` over Flower
messages. Each protocol round is one ``grid.send_and_receive``: the replies that come back are fed
to the session, and a reply that failed, broke the protocol or did not arrive before ``timeout``
counts as a dropout when the workflow closes the round with ``ServerSession.close_round()``.

The workflow only ever holds masked inputs (inside the session's running sum) and the unmasked
sum; the strategy receives the weighted average, once per survivor, in place of the clients'
parameters (as with Flower's SecAgg+), and the survivors' mean weight in place of their counts.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from secagg.aggregation.masking import MaskingAggregator
from secagg.encoding import FixedPointEncoder
from secagg.errors import AbortError, ParameterError, ProtocolViolation, SessionStateError
from secagg.integrations.flower.records import (
    METRICS_KEY,
    RECORD_KEY,
    SessionSetup,
    check_finite_positive,
    flatten,
    message_bytes,
    unflatten,
)
from secagg.protocol.config import SecAggConfig
from secagg.protocol.derivation import Round
from secagg.protocol.messages import SESSION_ID_BYTES
from secagg.protocol.server import ServerSession

if TYPE_CHECKING:
    from flwr.common import FitRes
    from flwr.server.client_proxy import ClientProxy

__all__ = ["SecAggMaskingWorkflow", "SecureFitWorkflow", "SecureRoundReport", "run_masking_session"]

logger = logging.getLogger("secagg.flower")


@dataclass
class SecureRoundReport:
    """What one federated round of :class:`SecAggMaskingWorkflow` did (``workflow.reports``)."""

    server_round: int
    sampled: list[int]  # Flower node ids, sorted (secagg client i is sampled[i])
    config: SecAggConfig | None = None
    survivors: list[int] = field(default_factory=list)  # node ids whose updates are in the sum
    dropped: dict[str, list[int]] = field(default_factory=dict)  # per protocol round, node ids
    failures: list[str] = field(default_factory=list)
    aborted: str | None = None
    total_weight: float = 0.0
    error_bound: float = 0.0  # largest decoding error of one coordinate of the average
    seconds: dict[str, float] = field(default_factory=dict)  # per protocol round, wall time
    server_seconds: dict[str, float] = field(default_factory=dict)  # per protocol round, session work
    misbehaving: dict[int, str] = field(default_factory=dict)  # node id -> why its message was refused
    errors: dict[int, str] = field(default_factory=dict)  # node id -> its first error reply's reason

    @property
    def ok(self) -> bool:
        return self.aborted is None and bool(self.survivors)


class SecureFitWorkflow:
    """What every secure fit workflow shares: Flower's entry point (``configure_fit``, one secure
    round by :meth:`aggregate`, ``aggregate_fit`` on the weighted average) and the reports."""

    reports: list[SecureRoundReport]

    def aggregate(self, grid, server_round: int, fit_ins: dict) -> tuple[SecureRoundReport, list | None, dict]:
        raise NotImplementedError

    # ------------------------------------------------------------------ Flower entry point

    def __call__(self, grid, context) -> None:
        import flwr.compat.common.recorddict_compat as compat
        from flwr.server.compat.legacy_context import LegacyContext
        from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD
        from flwr.server.workflow.constant import Key as WorkflowKey

        if not isinstance(context, LegacyContext):
            raise ParameterError(f"{type(self).__name__} needs a LegacyContext, got {type(context).__name__}")
        current_round = context.state.config_records[MAIN_CONFIGS_RECORD][WorkflowKey.CURRENT_ROUND]
        if isinstance(current_round, list):
            raise ParameterError(f"the workflow's current round is a list: {current_round!r}")
        server_round = int(current_round)
        parameters = compat.arrayrecord_to_parameters(context.state.array_records[MAIN_PARAMS_RECORD],
                                                      keep_input=True)
        selected = context.strategy.configure_fit(server_round, parameters, context.client_manager)
        if not selected:
            logger.info("configure_fit: no clients selected, round %s skipped", server_round)
            return
        proxies = {proxy.node_id: proxy for proxy, _ in selected}
        fit_ins = {proxy.node_id: ins for proxy, ins in selected}
        report, average, metrics = self.aggregate(grid, server_round, fit_ins)
        self.reports.append(report)
        if average is None:
            logger.error("secure aggregation of round %s failed: %s", server_round, report.aborted)
            return
        results = self._legacy_results(proxies, report, average, metrics)
        failures: list[tuple[ClientProxy, FitRes] | BaseException] = [Exception(text) for text in report.failures]
        aggregated, fit_metrics = context.strategy.aggregate_fit(server_round, results, failures)
        if aggregated is not None:
            context.state.array_records[MAIN_PARAMS_RECORD] = compat.parameters_to_arrayrecord(aggregated, True)
            context.history.add_metrics_distributed_fit(server_round=server_round, metrics=fit_metrics)

    @staticmethod
    def _legacy_results(proxies: dict, report: SecureRoundReport, average: list, metrics: dict) -> list:
        from flwr.common import Code, FitRes, Status, ndarrays_to_parameters

        parameters = ndarrays_to_parameters(average)
        mean_weight = max(1, int(round(report.total_weight / len(report.survivors))))
        return [(proxies[node], FitRes(Status(Code.OK, "secure aggregate"), parameters, mean_weight,
                                       metrics.get(node, {})))
                for node in report.survivors]


class SecAggMaskingWorkflow(SecureFitWorkflow):
    """Secure weighted aggregation of Flower fit results by secagg's masking protocol.

    * ``neighbors``: ``"auto"`` (SecAgg+: k and t from the round size, the expected
      ``dropout_fraction`` and ``corrupt_fraction``), an int k (SecAgg+ with k neighbours), or
      None (complete graph, Bonawitz SecAgg).
    * ``threshold``: shares needed per client: an int, a fraction of the holders, or None (2/3).
    * ``malicious``: clients sign their keys and the survivor list; needs ``verify_keys`` (Flower
      node id -> Ed25519 public key) and clients built with ``make_secagg_masking_mod(identity=...)``.
    * ``clip``: bound on each coordinate of a client's update ``params_k - global``;
      ``max_weight``: cap on a client's weight (its ``num_examples``); ``fractional_bits``: the
      fixed-point precision (error below ``n / 2^f / total_weight`` per coordinate);
      ``modulus_bits``: None picks the smallest ring the sum cannot wrap in.
    * ``timeout``: seconds to wait for each protocol round's replies (None: wait for all); late
      or failed replies are dropouts.
    """

    def __init__(self, *, neighbors: int | str | None = "auto", threshold: int | float | None = None,
                 malicious: bool = False, verify_keys: dict[int, bytes] | None = None, clip: float = 8.0,
                 max_weight: float = 1_000_000.0, fractional_bits: int = 16, modulus_bits: int | None = None,
                 timeout: float | None = None, dropout_fraction: float = 0.1, corrupt_fraction: float = 0.05) -> None:
        self._graph = MaskingAggregator(threshold=threshold, neighbors=neighbors, malicious=malicious,
                                        fractional_bits=fractional_bits, modulus_bits=modulus_bits,
                                        dropout_fraction=dropout_fraction, corrupt_fraction=corrupt_fraction)
        self.clip = check_finite_positive("clip", clip)
        self.max_weight = check_finite_positive("max_weight", max_weight)
        FixedPointEncoder(num_clients=2, max_weight=self.max_weight, clip=self.clip,
                          fractional_bits=fractional_bits)  # refuse impossible precision early
        self.fractional_bits = fractional_bits
        self.modulus_bits = modulus_bits
        self.malicious = bool(malicious)
        if self.malicious and verify_keys is None:
            raise ParameterError("malicious mode needs verify_keys: Flower node id -> Ed25519 public key")
        self.verify_keys = None if verify_keys is None else {int(k): bytes(v) for k, v in verify_keys.items()}
        self.timeout = None if timeout is None else check_finite_positive("timeout", timeout)
        self.reports: list[SecureRoundReport] = []

    # ------------------------------------------------------------------ one secure round

    def aggregate(self, grid, server_round: int, fit_ins: dict) -> tuple[SecureRoundReport, list | None, dict]:
        """Run one session among the nodes of ``fit_ins`` (node id -> FitIns).

        Returns the report, the new parameters (the global parameters plus the weighted average of
        the survivors' updates; None when the round aborted) and the survivors' fit metrics.
        """
        import flwr.compat.common.recorddict_compat as compat
        from flwr.common import parameters_to_ndarrays

        node_ids = sorted(int(n) for n in fit_ins)
        report = SecureRoundReport(server_round, node_ids)
        if len(node_ids) < 2:
            report.aborted = "secure aggregation needs at least 2 clients in a round"
            return report, None, {}
        first = fit_ins[node_ids[0]].parameters
        if any(fit_ins[n].parameters.tensors != first.tensors for n in node_ids[1:]):
            raise ParameterError("SecAggMaskingWorkflow aggregates updates against one global model: configure_fit "
                                 "must send every client the same parameters")
        global_arrays = parameters_to_ndarrays(first)
        global_vector = flatten(global_arrays)
        setup = self._setup(node_ids, global_vector.size)
        verify_keys = None
        if setup.config.malicious:
            missing = [n for n in node_ids if n not in self.verify_keys]  # type: ignore[operator]
            if missing:
                raise ParameterError(f"no verify key for nodes {missing[:5]}")
            verify_keys = {i: self.verify_keys[n] for i, n in enumerate(node_ids)}  # type: ignore[index]
        metrics: dict[int, dict] = {}

        def fit_instructions(node: int, round_name: Round):
            return compat.fitins_to_recorddict(fit_ins[node], True) if round_name is Round.MASKED_INPUT else None

        result = run_masking_session(grid, setup, report, group_id=str(server_round), timeout=self.timeout,
                                     verify_keys=verify_keys, content=fit_instructions, metrics=metrics)
        if result is None:
            return report, None, {}
        weighted_sum, total_weight = setup.encoder.decode_sum(result.aggregate)
        report.total_weight = float(total_weight)
        if total_weight <= 0:
            report.aborted = "the survivors carried no weight (num_examples all 0)"
            return report, None, {}
        report.error_bound = setup.encoder.error_bound(len(report.survivors), total_weight)
        average = unflatten(global_vector + weighted_sum / total_weight, global_arrays)
        return report, average, {node: m for node, m in metrics.items() if node in report.survivors}

    def _setup(self, node_ids: list[int], dimension: int) -> SessionSetup:
        n = len(node_ids)
        encoder = FixedPointEncoder(num_clients=n, max_weight=self.max_weight, clip=self.clip,
                                    fractional_bits=self.fractional_bits, modulus_bits=self.modulus_bits)
        config = self._graph.config_for(n, encoder.vector_length(dimension), encoder.ring.bits)
        return SessionSetup(os.urandom(SESSION_ID_BYTES), tuple(node_ids), config, encoder)


def run_masking_session(grid, setup: SessionSetup, report: SecureRoundReport, *, group_id: str,
                        timeout: float | None, verify_keys: dict[int, bytes] | None = None,
                        content: Callable[[int, Round], object] | None = None,
                        metrics: dict[int, dict] | None = None):
    """One masking session among ``setup.node_ids`` over Flower's ``grid``: the server session's
    result, or None when the session aborted (``report.aborted`` says why).

    Each protocol round is one ``grid.send_and_receive(..., timeout=timeout)``; a reply that failed,
    broke the protocol or did not arrive is a dropout of that round. ``content(node, round)`` gives
    the rest of a message's content (a ``RecordDict``, or None), e.g. the strategy's fit
    instructions in ``masked_input``; ``metrics`` collects the clients' fit metrics by node id.
    ``report`` receives the configuration, survivors, dropouts, timings, refused replies
    (``misbehaving``) and error replies (``errors``).
    """
    node_ids = list(setup.node_ids)
    report.config = setup.config
    server = ServerSession(setup.config, setup.session_id, verify_keys=verify_keys)
    rounds = [r for r in Round if setup.config.malicious or r is not Round.CONSISTENCY_CHECK]
    outbox: Mapping[int, object] = {i: setup.to_record(i) for i in range(len(node_ids))}
    by_place: dict[int, dict] = {}
    try:
        for round_name in rounds:
            start = time.perf_counter()
            messages = [_message(node_ids[i], round_name, payload, group_id,
                                 content(node_ids[i], round_name) if content is not None else None)
                        for i, payload in sorted(outbox.items())]
            replies = list(grid.send_and_receive(messages, timeout=timeout))
            waited = time.perf_counter()
            outbox = _collect(server, setup, round_name, replies, set(outbox), report, by_place)
            done = time.perf_counter()
            report.seconds[round_name.value] = done - start
            report.server_seconds[round_name.value] = done - waited
    except AbortError as exc:
        report.aborted = str(exc)
        report.dropped = {name: [node_ids[i] for i in ids] for name, ids in server.dropped.items()}
        return None
    result = server.result
    if result is None:  # unreachable: the last round either completes or raises AbortError
        raise SessionStateError(f"session ended in state {server.state.value}")
    report.dropped = {name: [node_ids[i] for i in ids] for name, ids in result.dropped.items()}
    report.survivors = [node_ids[i] for i in result.survivors]
    report.misbehaving.update({node_ids[i]: why for i, why in result.misbehaving.items()})
    if metrics is not None:
        metrics.update({node_ids[i]: m for i, m in by_place.items()})
    return result


def _message(node_id: int, round_name: Round, payload, group_id: str, content):
    from flwr.app import ConfigRecord, Message, RecordDict
    from flwr.app.message_type import MessageType

    if round_name is Round.ADVERTISE_KEYS:
        record = ConfigRecord(payload)
    else:
        record = ConfigRecord({"round": round_name.value, "message": payload})
    content = content if content is not None else RecordDict()
    content.config_records[RECORD_KEY] = record
    return Message(content=content, dst_node_id=node_id, message_type=MessageType.TRAIN, group_id=group_id)


def _collect(server: ServerSession, setup: SessionSetup, round_name: Round, replies: list, asked: set[int],
             report: SecureRoundReport, metrics: dict[int, dict]) -> dict[int, bytes]:
    """Feed the round's replies to the session and close the round; returns the next outbox."""
    outbox: dict[int, bytes] | None = None
    index = {node: i for i, node in enumerate(setup.node_ids)}
    for reply in replies:
        node = int(reply.metadata.src_node_id)
        client = index.get(node)
        if not readable_reply(reply, client is not None and client in asked, round_name.value, report) \
                or client is None:
            continue
        try:
            data = message_bytes(reply.content.config_records.get(RECORD_KEY), round_name.value, client)
            closed = server.receive(client, data)
        except ProtocolViolation as exc:
            logger.warning("round %s: refused the reply of node %s: %s", round_name.value, node, exc)
            report.failures.append(f"{round_name.value}: node {node}: {exc}")
            report.misbehaving.setdefault(node, f"{round_name.value}: {exc}")
            continue
        if round_name is Round.MASKED_INPUT and METRICS_KEY in reply.content.config_records:
            metrics[client] = dict(reply.content.config_records[METRICS_KEY])
        if server.state.value != round_name.value:
            outbox = closed
    if server.state.value == round_name.value:
        outbox = server.close_round()  # the deadline: whoever has not answered dropped out
    return outbox or {}


def readable_reply(reply, expected: bool, round_name: str, report: SecureRoundReport) -> bool:
    """Whether a reply is one to read: from a node asked in this round (``expected``) and not a
    Flower error; otherwise noted in ``report`` (an error reply's reason under ``errors``)."""
    node = int(reply.metadata.src_node_id)
    if not expected:
        report.failures.append(f"{round_name}: unexpected reply from node {node}")
        return False
    if reply.has_error():
        report.failures.append(f"{round_name}: node {node} failed: {reply.error.reason}")
        report.errors.setdefault(node, str(reply.error.reason))
        return False
    return True
