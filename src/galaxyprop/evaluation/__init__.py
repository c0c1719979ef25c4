"""How good a model is: the metrics of the contract (evaluation.metrics), predictive densities on a
grid (evaluation.densities), the head-by-head comparison report and every evaluation plot."""
