"""FlexZBoost (Izbicki & Lee 2017; Dalmasso et al. 2020), RAIL's `pz-rail-flexzboost`: a conditional density
expanded in a cosine basis whose coefficients xgboost regresses; LSST DESC's best photo-z estimator in its
data challenge. Run through galaxyprop's RAIL adapter (heads.rail_adapter)."""

from galaxyprop.heads.rail_adapter import RailHead


class FlexZBoostHead(RailHead):
    name = "rail_flexzboost"
    module, stem, package = "rail.estimation.algos.flexzboost", "FlexZBoost", "pz-rail-flexzboost"
