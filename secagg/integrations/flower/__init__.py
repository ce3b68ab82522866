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

__all__ = [
    "PAILLIER_RECORD_KEY",
    "RECORD_KEY",
    "SecAggMaskingWorkflow",
    "SecAggPaillierWorkflow",
    "SecureFitWorkflow",
    "SecureRoundReport",
    "SessionSetup",
    "make_secagg_masking_mod",
    "make_secagg_paillier_mod",
    "secagg_masking_mod",
]
