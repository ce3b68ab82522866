"""A Flower Grid that runs every node's ClientApp in this process, for quick Flower-driven tests.

Honest about what crosses the wire: every message and reply is turned into Flower's protobuf bytes
and back, and each node's Context is stored only as protobuf bytes between messages (as Flower's
simulation and SuperNode keep it apart from the ClientApp process), so a mod that kept state in
Python objects would fail here as it would in a real deployment. A ``fault`` callable decides,
per message, whether the node crashes (an error reply) or never answers (a timeout).
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Iterable

from flwr.app import Context, Error, Message, RecordDict
from flwr.common.constant import ErrorCode
from flwr.common.serde import context_from_proto, context_to_proto, message_from_proto, message_to_proto
from flwr.proto.message_pb2 import Context as ProtoContext  # pylint: disable=E0611
from flwr.proto.message_pb2 import Message as ProtoMessage  # pylint: disable=E0611
from flwr.serverapp.grid import Grid
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

SERVER_NODE_ID = 0


def _wire(message: Message) -> Message:
    return message_from_proto(ProtoMessage.FromString(message_to_proto(message).SerializeToString()))


class InProcessGrid(Grid):
    """``num_nodes`` nodes running ``client_app``; node i sees ``partition-id`` i."""

    def __init__(self, client_app, num_nodes: int, *, fault: Callable[[int, int, Message], str | None] | None = None,
                 seed: int = 0, run_id: int = 7) -> None:
        rng = random.Random(seed)
        self.node_ids = sorted(rng.randrange(1, 2**63) for _ in range(num_nodes))
        self.partition = {node: i for i, node in enumerate(self.node_ids)}
        self.client_app = client_app
        self.fault = fault
        self._run = Run.create_empty(run_id)
        # what Flower's ServerApp runtime sets before the app runs (Message() reads it)
        TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, run_id, SERVER_NODE_ID
        self._contexts = {node: context_to_proto(Context(run_id, node, {"partition-id": i, "num-partitions": num_nodes},
                                                         RecordDict(), {})).SerializeToString()
                          for i, node in enumerate(self.node_ids)}
        self.replies: list[Message] = []  # every reply the server received, as it received it
        self.client_seconds = 0.0

    def context(self, node_id: int) -> Context:
        return context_from_proto(ProtoContext.FromString(self._contexts[node_id]))

    # ------------------------------------------------------------------ Grid

    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def create_message(self, content, message_type, dst_node_id, group_id, ttl=None) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.node_ids)

    def push_messages(self, messages):
        raise NotImplementedError("use send_and_receive")

    def pull_messages(self, message_ids):
        raise NotImplementedError("use send_and_receive")

    def send_and_receive(self, messages, *, timeout=None):
        replies = []
        for message in messages:
            message.metadata.__dict__["_message_id"] = uuid.uuid4().hex
            message.metadata.__dict__["_run_id"] = self._run.run_id
            message.metadata.__dict__["_src_node_id"] = SERVER_NODE_ID
            node = message.metadata.dst_node_id
            received = _wire(message)
            outcome = self.fault(self.partition[node], node, received) if self.fault else None
            if outcome == "timeout":
                continue
            context = self.context(node)
            start = time.perf_counter()
            try:
                if outcome == "crash":
                    raise RuntimeError("node crashed")
                reply = self.client_app(received, context)
            except Exception as exc:  # noqa: BLE001 - Flower turns any ClientApp exception into an error reply
                reply = Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION,
                                      reason=f"{type(exc).__name__}: {exc}"), reply_to=received)
            self.client_seconds += time.perf_counter() - start
            self._contexts[node] = context_to_proto(context).SerializeToString()
            reply.metadata.__dict__["_message_id"] = uuid.uuid4().hex
            reply = _wire(reply)
            self.replies.append(reply)
            replies.append(reply)
        return replies
