"""Differential privacy on top of secure aggregation: integer noise split across parties, and accounting.

    from secagg.dp import DPConfig
    fl = FedAvg(model, aggregator="masking", rounds=100, dp=DPConfig(epsilon=3.0, delta=1e-5, clip=0.5))
    fl.fit(clients).epsilon          # one epsilon per round, from dp-accounting

* :mod:`secagg.dp.sampling`: exact discrete Gaussian (Canonne-Kamath-Steinke 2020), Skellam, and the
  client / record samples of amplification by sampling, all on a CSPRNG;
* :mod:`secagg.dp.rotation`: randomized Hadamard rotation;
* :mod:`secagg.dp.mechanism`: clipping, rotation, conditional rounding, noise shares, modular decode;
* :mod:`secagg.dp.accounting`: dp-accounting events, epsilon and calibration (the ``dp`` extra).

See docs/dp.md for the calibration and dropout choices.
"""

from secagg.dp.accounting import (
    MechanismAccountant,
    calibrate_noise_multiplier,
    epsilon_for_noise_multiplier,
    require_dp_accounting,
)
from secagg.dp.config import DPConfig
from secagg.dp.mechanism import DistributedMechanism
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
    "calibrate_noise_multiplier",
    "discrete_gaussian_pmf",
    "discrete_gaussian_reference",
    "epsilon_for_noise_multiplier",
    "poisson_subsample",
    "require_dp_accounting",
    "sample_cohort",
    "sample_discrete_gaussian",
    "sample_skellam",
]
