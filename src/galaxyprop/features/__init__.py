"""Feature sources a head learns from: catalogue photometry (colours, magnitudes), external embeddings
joined by id, and the image cutouts as the CNNs see them (crops, shifts, scaling); and the training
support a served answer is checked against (support)."""
