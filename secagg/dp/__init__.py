"""Differential privacy on top of secure aggregation: integer noise split across parties, and accounting.

    from secagg.dp import DPConfig
    fl = FedAvg(model, aggregator="masking", rounds=100, dp=DPConfig(epsilon=3.0, delta=1e-5, clip=0.5))
    fl.fit(clients).epsilon          # one epsilon per round; each says which accountant produced it

* :mod:`secagg.dp.sampling`: exact discrete Gaussian (Canonne-Kamath-Steinke 2020), Skellam, and the
  client / record samples of amplification by sampling, all on a CSPRNG;
* :mod:`secagg.dp.rotation`: randomized Hadamard rotation;
* :mod:`secagg.dp.mechanism`: clipping, rotation, conditional rounding with secret coins, noise
  shares, modular decode, calibration; :class:`MechanismParameters` is what a deployment announces;
* :mod:`secagg.dp.accounting`: RDP curves, the proven subsampling bounds (default) and the Gaussian
  approximation, conversion with dp-accounting (the ``dp`` extra).

See docs/dp.md for the theorems, the calibration and the dropout choices.
"""

from secagg.dp.accounting import Epsilon, MechanismAccountant, require_dp_accounting, rho_budget
from secagg.dp.config import DPConfig
from secagg.dp.mechanism import DistributedMechanism, MechanismParameters
from secagg.dp.sampling import (
    AesCtrRandomness,
    discrete_gaussian_pmf,
    discrete_gaussian_reference,
    poisson_subsample,
    sample_cohort,
    sample_discrete_gaussian,
    sample_skellam,
)

__all__ = [
    "AesCtrRandomness",
    "DPConfig",
    "DistributedMechanism",
    "MechanismAccountant",
    "MechanismParameters",
    "Epsilon",
    "discrete_gaussian_pmf",
    "discrete_gaussian_reference",
    "poisson_subsample",
    "require_dp_accounting",
    "rho_budget",
    "sample_cohort",
    "sample_discrete_gaussian",
    "sample_skellam",
]
