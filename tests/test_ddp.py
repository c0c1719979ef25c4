"""The encoder under Lightning's DDP: 2 CPU processes (gloo), each with half of every global batch, the
embeddings gathered before InfoNCE. Against one process on the same data, initial weights and global
batches and augmentation draws: with no learning the validation loss is the same number, and 2 epochs
of training give the same loss curve within TOLERANCE nats per epoch."""

import copy

import numpy as np
import pytest

from galaxyprop.encoder.contrastive import ContrastiveModel
from galaxyprop.encoder.devices import check_devices
from galaxyprop.encoder.distributed import EpochHistory, encoder_trainer
from galaxyprop.encoder.pairs import GlobalBatchSampler, PairDataModule
from galaxyprop.errors import GalaxypropError

from conftest import mock_config

BATCH = 16
#: |loss(2 processes) - loss(1 process)| allowed per epoch, in nats (chance: ln 16 = 2.77); what is left
#: is the order of float sums (the gradients' all-reduce). Measured on 2 cores: 5e-7 (epoch 0's train loss).
TOLERANCE = 1e-3
MODEL = {"embedding_dim": 16, "image_widths": [8, 16], "spectrum_widths": [8, 16], "crop": 48, "max_shift": 2,
         "learning_rate": 3e-3, "logit_scale": 5.0}     # 15.5 (AstroCLIP's) collapses a model this small

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pairs(tmp_path_factory, params):
    from galaxyprop.mock.survey import simulate_survey

    root = tmp_path_factory.mktemp("ddp")
    simulate_survey(mock_config(params, n_galaxies=160, n_jobs=1), root / "astroclip.h5", root / "fastspec.fits",
                    progress=False)
    order = np.random.default_rng(0).permutation(160)
    return root / "astroclip.h5", {"train": order[:96], "val": order[96:128], "test": order[128:]}


def losses(pairs, devices: int, tmp_path, **model) -> list[dict]:
    """2 epochs from the same initial weights (seed 0) on `devices` processes: train and val loss per epoch."""
    import lightning as L

    path, rows = pairs
    L.seed_everything(0, verbose=False)
    net = ContrastiveModel({**MODEL, **model}, max_epochs=2)
    history = EpochHistory(tmp_path / f"history-{devices}.json")
    trainer = encoder_trainer(devices, BATCH, max_epochs=2, callbacks=[history], logger=False,
                              enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                              num_sanity_val_steps=0)
    trainer.fit(copy.deepcopy(net), datamodule=PairDataModule(path, rows, BATCH, min_image_size=48, seed=0))
    return history.recorded()


def test_ddp_gathers_the_global_batch(pairs, tmp_path):
    """No learning: the two processes' gathered validation batches are one process's, so the loss agrees
    to float precision (a per-process loss over half batches would be ~ln 2 lower)."""
    one = losses(pairs, 1, tmp_path, learning_rate=0.0)
    two = losses(pairs, 2, tmp_path, learning_rate=0.0)
    for a, b in zip(one, two, strict=True):
        assert b["val_loss"] == pytest.approx(a["val_loss"], abs=1e-4)


def test_ddp_loss_curve_matches_one_process(pairs, tmp_path):
    one = losses(pairs, 1, tmp_path)
    two = losses(pairs, 2, tmp_path)
    assert len(one) == len(two) == 2
    for a, b in zip(one, two, strict=True):
        for key in ("train_loss", "val_loss"):
            assert abs(a[key] - b[key]) < TOLERANCE, (key, one, two)
    assert two[0]["train_loss"] - two[1]["train_loss"] > 0.02      # the weights moved (a frozen model: ~0)


def test_global_batches_split_evenly_over_processes():
    """Every process gets the same number of equal slices; together, in rank order, they are the global
    batch (training: a permutation, the incomplete rest dropped; evaluation: every row but < world_size)."""
    train = [list(GlobalBatchSampler(50, 8, rank, 2, shuffle=True, seed=3)) for rank in range(2)]
    assert len(train[0]) == len(train[1]) == 50 // 8 == len(GlobalBatchSampler(50, 8, 0, 2, True))
    rows = [r for a, b in zip(*train, strict=True) for r in a + b]
    assert all(len(b) == 4 for t in train for b in t) and len(set(rows)) == 48
    evaluation = [list(GlobalBatchSampler(21, 8, rank, 2, shuffle=False)) for rank in range(2)]
    assert [r for a, b in zip(*evaluation, strict=True) for r in a + b] == list(range(20))
    with pytest.raises(GalaxypropError, match="do not split over 3 processes"):
        GlobalBatchSampler(50, 8, 0, 3, shuffle=True)


def test_devices_refused_in_one_line():
    with pytest.raises(GalaxypropError, match=r"batch_size 100 does not split over encoder.training.devices 3"):
        check_devices(3, 100, gpus=0)
    with pytest.raises(GalaxypropError, match=r"devices 4: this machine has 2 GPU\(s\)"):
        check_devices(4, 128, gpus=2)
    check_devices(2, 128, gpus=0)                                  # CPU processes: fine
