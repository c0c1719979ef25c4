"""Two small registered models in a temporary MLflow store: a catalogue-in and an image-in one.

Both are calibrated on held-out rows; the catalogue model also carries a map of its own for the
north field (intervals twice as wide), so that the plumbing of each row's field can be seen."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from galaxyprop.calibration import CalibrationSettings, ProbitMap
from galaxyprop.config import Stores
from galaxyprop.data.astroclip import N_SPECTRUM_PIXELS, astroclip_writer
from galaxyprop.data.catalog import CatalogSpec, read_catalog
from galaxyprop.evaluation.densities import Grid
from galaxyprop.heads import make_head
from galaxyprop.registry import versions as registry
from galaxyprop.registry.predictor import Predictor
from galaxyprop.tracking import runs as tracking

from conftest import gst_path, sdss_data

STAMP = 20
CALIBRATION = CalibrationSettings(min_rows=100)


@dataclass
class Models:
    root: Path
    catalogue_uri: str
    image_uri: str
    catalogue: object           # the loaded pyfunc models
    image: object
    galaxies: pd.DataFrame      # held-out SDSS galaxies the catalogue model did not train on
    images: np.ndarray          # (n, 3, STAMP, STAMP) cutouts the image model did not train on


def stores(root: Path) -> Stores:
    return Stores(f"sqlite:///{root}/mlflow.db", (root / "artifacts").as_uri(), f"sqlite:///{root}/optuna.db",
                  "galaxyprop-test")


def register_models(root: Path, params: dict) -> Models:
    """Register both models in the store at `root` (the caller points MLflow at it)."""
    import torch

    from galaxyprop.encoder.embedding import ImageEmbedder
    from galaxyprop.encoder.networks import ImageEncoder
    from galaxyprop.features.photometry import PhotometryFeatures

    tracking.connect(stores(root))
    frame, _ = read_catalog(gst_path(), CatalogSpec.from_params(sdss_data(params)), max_rows=1500, seed=0)
    train, val, test = frame.iloc[:900], frame.iloc[900:1200], frame.iloc[1200:].reset_index(drop=True)
    photometry = PhotometryFeatures()
    catalogue = Predictor("z", photometry, make_head("knn", k=16).fit(photometry.transform(train), train["z"]),
                          Grid(0.0, 0.8, 200))
    catalogue.record_support(photometry.transform(train), train["z"])
    catalogue.calibrate(photometry.transform(val), val["z"], settings=CALIBRATION)
    catalogue.calibration.field_maps = {"N": ProbitMap((-1.0, 1.0), (-0.5, 0.5))}
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    embedder = ImageEmbedder(ImageEncoder((4, 8), embedding_dim=6), torch.ones(3), crop=16)
    images = rng.normal(0, 1, (500, 3, STAMP, STAMP)).astype(np.float32)
    y = rng.uniform(-0.3, 0.3, 300)
    image = Predictor("kcorr_r01", embedder, make_head("knn", k=8).fit(embedder.transform(images[:200]), y[:200]),
                      Grid(-0.6, 0.5, 110))
    image.calibrate(embedder.transform(images[200:300]), y[200:], settings=CALIBRATION)
    with tracking.stage_run(stores(root), "register"):
        catalogue_version = registry.register_predictor(catalogue, test.head(5), {"head": "knn"}, {})
        image_version = registry.register_predictor(image, images[:5], {"head": "knn"}, {})
    uris = f"models:/galaxyprop-z-catalogue/{catalogue_version}", f"models:/galaxyprop-kcorr_r01-images/{image_version}"
    return Models(root, *uris, *(mlflow.pyfunc.load_model(u) for u in uris), test, images[300:])


def write_astroclip(path: Path, images: np.ndarray, targetids: np.ndarray) -> Path:
    """An AstroCLIP-layout file holding `images` (n, 3, H, W) in its (n, H, W, 3) layout."""
    n = len(images)
    with astroclip_writer(path, n, images.shape[-1]) as writer:
        zeros = np.zeros((n, N_SPECTRUM_PIXELS), np.float32)
        writer.write(0, np.moveaxis(images, 1, -1), zeros, zeros, np.zeros(n), targetids)
    return path


@contextmanager
def served(tracking_uri: str, model_uri: str, **env: str) -> Iterator[Callable[..., tuple[int, bytes]]]:
    """The scoring server `galaxyprop serve` runs, on a free 127.0.0.1 port, serving `model_uri` (`env`:
    more of its environment); yields `post(body, content_type="application/json") -> (status, body)` for
    /invocations (content_type None: urllib's form type), and stops the server by its process group."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "GALAXYPROP_SERVED_MODEL": model_uri, **env}
    server = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "galaxyprop.registry.serving:create_app",
                               "--host", "127.0.0.1", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def post(payload: bytes, content_type: str | None = "application/json") -> tuple[int, bytes]:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", payload,
                                         {"Content-Type": content_type} if content_type else {})
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1)
                break
            except OSError:
                assert server.poll() is None, "the server exited"
                time.sleep(0.5)
        yield post
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
