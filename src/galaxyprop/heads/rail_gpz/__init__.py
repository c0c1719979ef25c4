"""GPz (Almosallam et al. 2016), RAIL's `pz-rail-gpz-v1`: sparse Gaussian processes with input-dependent
noise, on the features as magnitudes. Run through galaxyprop's RAIL adapter (heads.rail_adapter)."""

from galaxyprop.heads.rail_adapter import RailHead


class GPzHead(RailHead):
    name = "rail_gpz"
    module, stem, package = "rail.estimation.algos.gpz", "GPz", "pz-rail-gpz-v1"
    takes_colours = False

    def settle(self, model):
        model.timer = 0.0      # GPz keeps its training's wall-clock time in the model
        return model
