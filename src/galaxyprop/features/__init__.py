"""Encoders that turn a dataset into a feature matrix."""
