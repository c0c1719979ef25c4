"""Experiment tracking: MLflow runs for every stage (tracking.runs) and Optuna studies for every head's
hyperparameter search (tracking.tuning)."""
