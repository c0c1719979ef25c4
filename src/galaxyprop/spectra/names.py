"""The spectrum heads' names, for params checks that must not import the heads (and torch)."""

SPECTRUM_HEADS = ("knn", "mlp")
