"""galaxyprop: k-corrections and redshifts with calibrated uncertainties, run as MLOps."""

from galaxyprop import _moved

__version__ = "0.1.0"
_moved.install()
