"""CMNN (Graham et al. 2018), RAIL's `pz-rail-cmnn`: colour-matched nearest neighbours within a Mahalanobis
distance. Run through galaxyprop's RAIL adapter (heads.rail_adapter)."""

from galaxyprop.heads.rail_adapter import RailHead


class CMNNHead(RailHead):
    name = "rail_cmnn"
    module, stem, package = "rail.estimation.algos.cmnn", "CMNN", "pz-rail-cmnn"
