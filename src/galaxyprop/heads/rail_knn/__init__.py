"""RAIL's KNN (`pz-rail-sklearn`): neighbours in colour and reference-band space, Gaussian-mixture densities.
Run through galaxyprop's RAIL adapter (heads.rail_adapter)."""

from types import MappingProxyType

from galaxyprop.heads.rail_adapter import RailHead


class RailKNNHead(RailHead):
    name = "rail_knn"
    module, stem, package = "rail.estimation.algos.k_nearneigh", "KNearNeigh", "pz-rail-sklearn"
    common_names = MappingProxyType({"nneigh_max": "neighbours"})
