"""Cross-modal retrieval: does a galaxy's image find its own spectrum (and vice versa)?"""

from __future__ import annotations

import numpy as np

from galaxyprop.errors import GalaxypropError


def retrieval_top_k(queries: np.ndarray, keys: np.ndarray, ks: tuple[int, ...] = (1, 5)) -> dict[int, float]:
    """Fraction of rows i whose own key i is among the k keys most cosine-similar to query i."""
    queries, keys = np.asarray(queries, float), np.asarray(keys, float)
    if queries.shape != keys.shape or queries.ndim != 2:
        raise GalaxypropError(f"queries {queries.shape} and keys {keys.shape} must be matching (n, d) matrices")
    queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    keys = keys / np.linalg.norm(keys, axis=1, keepdims=True)
    similarity = queries @ keys.T
    own = np.diag(similarity)
    # rank of the own key = how many keys beat it (ties count against, so a constant encoder scores 0)
    rank = (similarity >= own[:, None]).sum(axis=1) - 1
    return {k: float(np.mean(rank < k)) for k in ks}


def retrieval_metrics(image_embedding: np.ndarray, spectrum_embedding: np.ndarray) -> dict[str, float]:
    """Top-1 and top-5 in both directions, with the chance level for comparison."""
    image_to_spectrum = retrieval_top_k(image_embedding, spectrum_embedding)
    spectrum_to_image = retrieval_top_k(spectrum_embedding, image_embedding)
    n = len(image_embedding)
    return {"image_to_spectrum_top1": image_to_spectrum[1], "image_to_spectrum_top5": image_to_spectrum[5],
            "spectrum_to_image_top1": spectrum_to_image[1], "spectrum_to_image_top5": spectrum_to_image[5],
            "chance_top1": 1.0 / n, "chance_top5": min(1.0, 5.0 / n)}
