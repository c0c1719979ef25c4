"""galaxyprop: k-corrections and redshifts with calibrated uncertainties, run as MLOps."""

__version__ = "0.1.0"
