"""The masking protocol as sans-IO state machines, its messages and their canonical codec."""

from secagg.protocol.client import ClientSession, ClientState
from secagg.protocol.config import SecAggConfig
from secagg.protocol.derivation import Round
from secagg.protocol.bounds import ThreatModel
from secagg.protocol.graph import GraphParameters, HolderGraph, choose_graph_parameters, draw_holders
from secagg.protocol.messages import Message, MessageType, decode_message, encode_broadcast
from secagg.protocol.server import AggregationResult, ServerSession, ServerState

__all__ = [
    "AggregationResult",
    "ClientSession",
    "ClientState",
    "GraphParameters",
    "Message",
    "MessageType",
    "HolderGraph",
    "Round",
    "SecAggConfig",
    "ServerSession",
    "ServerState",
    "ThreatModel",
    "choose_graph_parameters",
    "decode_message",
    "draw_holders",
    "encode_broadcast",
]
