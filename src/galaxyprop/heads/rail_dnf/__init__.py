"""DNF (De Vicente et al. 2016), RAIL's `pz-rail-dnf`: directional neighbourhood fitting, on the features as
magnitudes. Run through galaxyprop's RAIL adapter (heads.rail_adapter). Its answers depend on the batch
(heads.BATCH_DEPENDENT_HEADS), so it is compared, never served."""

from galaxyprop.heads.rail_adapter import RailHead


class DNFHead(RailHead):
    name = "rail_dnf"
    module, stem, package = "rail.estimation.algos.dnf", "DNF", "pz-rail-dnf"
    takes_colours = False
