"""Classic baselines behind the same estimator interface as DeepRec.

Each model lives in its own module so importing one does not pull in the others' dependencies.
"""

from __future__ import annotations

from deeprec.baselines.autorec import AutoRec
from deeprec.baselines.bias import BiasOnly
from deeprec.baselines.mf import BiasedMF

__all__ = ["AutoRec", "BiasOnly", "BiasedMF"]
