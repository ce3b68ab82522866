"""secagg inside Flower: a client mod and a server workflow for secure weighted aggregation.

A Flower app that uses Flower's SecAgg+ switches by changing two lines::

    client_app = ClientApp(client_fn=client_fn, mods=[secagg_masking_mod])
    workflow = DefaultWorkflow(fit_workflow=SecAggMaskingWorkflow(neighbors="auto"))

The workflow runs secagg's masking protocol (SecAgg / SecAgg+) over Flower messages: each
protocol message travels as its canonical bytes in a ``ConfigRecord``, a client's weighted update
``n_k * (params_k - global)`` and its weight ``n_k`` are fixed-point encoded and masked on the
client, and the strategy receives only the weighted average. A reply that fails or does not arrive
within ``timeout`` is a dropout. See docs/flower.md.

The Paillier path runs the same way for a bank consortium: ``SecAggPaillierWorkflow`` (holds only
the public key) and ``make_secagg_paillier_mod(share=..., identity=..., verify_keys=...)`` on each
bank's node.

A :class:`~secagg.fedavg.FedAvg` configuration runs on Flower as it runs in process:
``server_app, client_app = flower_apps(fedavg, num_clients, client_data=..., eval_data=...)``
(cohorts, local training, DP and the record of every round are ``fedavg``'s own; see
:mod:`secagg.integrations.flower.fedavg`).

Needs Flower: ``pip install 'secagg[flower]'``.
"""

from __future__ import annotations

try:
    import flwr  # noqa: F401
except ImportError:  # pragma: no cover - exercised by a test that hides flwr
    raise ImportError("secagg.integrations.flower needs Flower (flwr): pip install 'secagg[flower]'") from None

from secagg.integrations.flower.mod import make_secagg_masking_mod, secagg_masking_mod
from secagg.integrations.flower.records import RECORD_KEY, SessionSetup
from secagg.integrations.flower.workflow import SecAggMaskingWorkflow, SecureFitWorkflow, SecureRoundReport
from secagg.integrations.flower.paillier import (  # noqa: I001 - after the workflow it builds on
    PAILLIER_RECORD_KEY,
    SecAggPaillierWorkflow,
    make_secagg_paillier_mod,
)
from secagg.integrations.flower.fedavg import FedAvgWorkflow, fedavg_client_app, flower_apps

__all__ = [
    "FedAvgWorkflow",
    "PAILLIER_RECORD_KEY",
    "RECORD_KEY",
    "SecAggMaskingWorkflow",
    "SecAggPaillierWorkflow",
    "SecureFitWorkflow",
    "SecureRoundReport",
    "SessionSetup",
    "fedavg_client_app",
    "flower_apps",
    "make_secagg_masking_mod",
    "make_secagg_paillier_mod",
    "secagg_masking_mod",
]
