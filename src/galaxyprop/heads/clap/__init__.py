"""CLAP: calibrated densities by supervised contrastive learning, adaptive KNN, refit and ensemble."""

from galaxyprop.heads.clap.head import ClapHead

__all__ = ["ClapHead"]
