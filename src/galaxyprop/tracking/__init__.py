"""Experiment tracking: MLflow runs for every stage (tracking.runs) and Optuna studies for every head's
hyperparameter search (tracking.tuning)."""

#: The Optuna trial's user attribute naming the worker that ran it ("<host>:<pid>/<index>"), which each
#: trial's MLflow run carries as a tag (here, so that runs need not import the tuning module).
WORKER_ATTR = "worker"
