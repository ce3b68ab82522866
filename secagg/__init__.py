"""secagg: secure aggregation for federated learning.

The server of a federated job learns the sum of the clients' vectors and nothing else, even
when clients drop out mid-round (Bonawitz et al., CCS 2017; SecAgg+, Bell et al., CCS 2020).

    import secagg
    cfg = secagg.SecAggConfig(num_clients=10, threshold=7, vector_length=1000)
    res = secagg.simulate(cfg, inputs, drop={"masked_input": [3]})
    res.aggregate, res.survivors
"""

from secagg._version import __version__
from secagg.errors import (
    AbortError,
    CryptoError,
    MalformedMessage,
    ParameterError,
    ProtocolViolation,
    SecAggError,
    SessionStateError,
)
from secagg.protocol.client import ClientSession
from secagg.protocol.config import SecAggConfig
from secagg.protocol.derivation import Round
from secagg.protocol.graph import GraphParameters, choose_graph_parameters
from secagg.protocol.server import AggregationResult, ServerSession
from secagg.ring import Ring
from secagg.transport.simulator import RoundReport, SimulationResult, simulate

__all__ = [
    "AbortError",
    "AggregationResult",
    "ClientSession",
    "CryptoError",
    "GraphParameters",
    "MalformedMessage",
    "ParameterError",
    "ProtocolViolation",
    "Ring",
    "Round",
    "RoundReport",
    "SecAggConfig",
    "SecAggError",
    "ServerSession",
    "SessionStateError",
    "SimulationResult",
    "choose_graph_parameters",
    "simulate",
]
