"""The Paillier key without a dealer: the banks generate N = pq and the threshold decryption key
among themselves (Boneh-Franklin with CRT-form sieving; the wire format is protocols/dkg-v1.md; see
docs/paillier.md, "Key ceremony
without a dealer"). Sans-IO parties: :class:`DkgBank`, :class:`DkgCoordinator`; in process:
:func:`generate_threshold_keypair_without_dealer`, :func:`run_ceremony`.
"""

from __future__ import annotations

from secagg.paillier.dkg.bank import BankState, CeremonyStats, DkgBank, new_ceremony_id
from secagg.paillier.dkg.ceremony import CeremonyReport, generate_threshold_keypair_without_dealer, run_ceremony
from secagg.paillier.dkg.config import DkgConfig
from secagg.paillier.dkg.coordinator import CoordinatorState, DkgCoordinator

__all__ = ["BankState", "CeremonyReport", "CeremonyStats", "CoordinatorState", "DkgBank", "DkgConfig",
           "DkgCoordinator", "generate_threshold_keypair_without_dealer", "new_ceremony_id", "run_ceremony"]
