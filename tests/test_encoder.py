"""The contrastive image-spectrum encoder: shapes, normalisation, augmentation, loss, retrieval,
and a tiny end-to-end train -> embed on a mock survey."""

from __future__ import annotations

import math

import lightning as L
import numpy as np
import pytest
import torch

from galaxyprop.data.astroclip import AstroclipFile
from galaxyprop.encoder.contrastive import ContrastiveModel, EncoderConfig, clip_loss
from galaxyprop.encoder.networks import ApertureFluxes, ImageEncoder, SpectrumEncoder
from galaxyprop.encoder.pairs import PairDataModule
from galaxyprop.encoder.retrieval import retrieval_metrics, retrieval_top_k
from galaxyprop.encoder.spectra import check_spectra, normalise_spectra
from galaxyprop.errors import GalaxypropError
from galaxyprop.features.images import (
    asinh_stretch,
    augment,
    background_noise,
    center_crop,
    channels_first,
    dihedral,
    dihedral_inverse,
)

from conftest import mock_config

SMALL = {"embedding_dim": 16, "image_widths": [8, 16], "spectrum_widths": [8, 8, 16], "crop": 24, "max_shift": 2}


def test_encoders_give_unit_embeddings_of_the_configured_size():
    torch.manual_seed(0)
    images = ImageEncoder((8, 16, 32), embedding_dim=24)(torch.randn(5, 3, 40, 40))
    spectra = SpectrumEncoder((8, 16), embedding_dim=24)(torch.randn(5, 7781))
    for out in (images, spectra):
        assert out.shape == (5, 24)
        np.testing.assert_allclose(out.norm(dim=1).detach().numpy(), 1.0, rtol=1e-5)


def test_spectrum_encoder_sees_where_the_lines_are():
    """Redshift is the position of the lines: moving a line must change the embedding."""
    torch.manual_seed(0)
    spectrum_encoder = SpectrumEncoder((8, 16), 16).eval()
    line = torch.zeros(1, 7781)
    line[0, 2000:2010] = 10.0
    shifted = torch.roll(line, 1000, dims=1)
    assert (spectrum_encoder(line) - spectrum_encoder(shifted)).abs().max() > 1e-2


def test_aperture_fluxes_measure_a_centred_source_on_the_linear_scale():
    """The aperture branch undoes the asinh stretch: a point source of flux F (in softening units)
    gives asinh(F) / 5 in every aperture, a disk of 9 such pixels 9 F in the large ones, whatever D4 does."""
    apertures = ApertureFluxes((2.0, 4.0, 8.0))
    flux = torch.zeros(1, 3, 32, 32)
    flux[0, :, 15:18, 15:18] = torch.tensor([1.0, 2.0, 4.0]).view(3, 1, 1) * 10
    out = apertures(torch.asinh(flux)).view(3, 3)
    total = flux.sum(dim=(-2, -1))[0]
    torch.testing.assert_close(out[:, 1:], (torch.asinh(total) / 5).view(3, 1).expand(3, 2), rtol=1e-5, atol=1e-5)
    for element in range(8):
        torch.testing.assert_close(apertures(torch.asinh(dihedral(flux, element))), apertures(torch.asinh(flux)))


def test_dihedral_elements_form_the_group_and_conserve_flux():
    image = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).reshape(2, 3, 5, 5)
    seen = set()
    for element in range(8):
        out = dihedral(image, element)
        assert torch.equal(dihedral(out, dihedral_inverse(element)), image)
        assert out.sum() == image.sum()
        seen.add(tuple(out[0, 0].flatten().tolist()))
    assert len(seen) == 8                      # eight distinct elements
    assert torch.equal(dihedral(image, 1), torch.rot90(image, 1, dims=(-2, -1)))


def test_augmentation_commutes_with_the_stretch_and_moves_the_centroid():
    torch.manual_seed(1)
    images = torch.rand(16, 3, 32, 32) * 3
    softening = torch.tensor([0.5, 1.0, 2.0])
    gen_a, gen_b = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    # the stretch is per pixel and per band, so it commutes with every rotation, flip and crop
    torch.testing.assert_close(asinh_stretch(augment(images, 24, 3, gen_a), softening),
                               augment(asinh_stretch(images, softening), 24, 3, gen_b))
    point = torch.zeros(1, 3, 32, 32)
    point[..., 16, 16] = 1.0
    cropped = center_crop(point, 24, dx=3, dy=-2)
    y, x = np.argwhere(cropped[0, 0].numpy() == 1.0)[0]
    assert (x, y) == (12 - 3, 12 + 2)         # the window moved by (3, -2): the source by (-3, +2)
    with pytest.raises(GalaxypropError, match="does not fit"):
        center_crop(point, 24, dx=5)


def test_an_encoder_averaged_over_d4_is_invariant_under_d4():
    """Equivariance check of the pipeline: rotating the input permutes the D4 orbit, so the orbit
    average of any encoder is exactly invariant."""
    torch.manual_seed(0)
    encoder = ImageEncoder((8, 16), 8).eval()
    image = torch.rand(2, 3, 24, 24)

    def orbit_mean(x):
        return torch.stack([encoder(dihedral(x, e)) for e in range(8)]).mean(0)

    for element in range(8):
        torch.testing.assert_close(orbit_mean(dihedral(image, element)), orbit_mean(image), atol=1e-5, rtol=1e-5)


def test_clip_loss_matches_its_closed_form():
    n, scale = 6, torch.tensor(2.0)
    basis = torch.eye(n, 8)
    # perfectly aligned orthogonal pairs: each row's softmax is e^s / (e^s + (n-1))
    expected = math.log(1 + (n - 1) * math.exp(-2.0))
    assert clip_loss(basis, basis, scale).item() == pytest.approx(expected, rel=1e-4)
    # identical embeddings for all: chance, log n
    same = torch.nn.functional.normalize(torch.ones(n, 8), dim=1)
    assert clip_loss(same, same, scale).item() == pytest.approx(math.log(n), rel=1e-5)


def test_retrieval_on_known_inputs():
    rng = np.random.default_rng(0)
    keys = rng.normal(size=(50, 8))
    assert retrieval_top_k(keys, keys) == {1: 1.0, 5: 1.0}
    shuffled = keys[np.r_[1:50, 0]]                       # every query's best match is someone else's key
    assert retrieval_top_k(shuffled, keys)[1] == 0.0
    constant = np.ones((50, 8))
    assert retrieval_top_k(constant, keys)[5] == pytest.approx(5 / 50)   # one ranking for all queries: chance
    assert retrieval_top_k(keys, constant)[5] == 0.0       # all keys tied: nothing is retrieved
    metrics = retrieval_metrics(keys, keys)
    assert metrics["chance_top5"] == pytest.approx(0.1)


def test_spectrum_normalisation_and_floor():
    flux = torch.tensor([[1.0, 3.0, 5.0, 7.0], [2.0, 2.0, 2.0, 2.001]])
    out = normalise_spectra(flux, std_floor=0.2)
    np.testing.assert_allclose(out[0].mean().item(), 0.0, atol=1e-6)
    np.testing.assert_allclose(out[0].std().item(), 1.0, rtol=1e-6)
    assert out[1].abs().max() < 0.01                          # flat spectrum: the floor stops noise blow-up


def test_bad_images_and_spectra_give_clear_errors():
    with pytest.raises(GalaxypropError, match=r"shape \(N, H, W, 3\) or \(N, 3, H, W\)"):
        channels_first(np.zeros((4, 32, 32)))
    with pytest.raises(GalaxypropError, match="shape"):
        channels_first(np.zeros((4, 5, 32, 32)))
    images = np.zeros((4, 32, 32, 3), np.float32)
    images[2, 5, 5, 1] = np.nan
    with pytest.raises(GalaxypropError, match="row 2 has NaN"):
        channels_first(images)
    with pytest.raises(GalaxypropError, match="at least 48x48"):
        channels_first(np.zeros((2, 3, 32, 32)), min_size=48)
    assert channels_first(np.zeros((2, 32, 32, 3))).shape == (2, 3, 32, 32)
    with pytest.raises(GalaxypropError, match="7781"):
        check_spectra(np.zeros((3, 4000)))
    spectra = np.zeros((3, 7781))
    spectra[1, 10] = np.inf
    with pytest.raises(GalaxypropError, match="row 1"):
        check_spectra(spectra)
    with pytest.raises(GalaxypropError, match="unknown encoder.model params"):
        EncoderConfig.from_params({"embeding_dim": 3})


def test_background_noise_recovers_the_injected_sky_noise():
    rng = np.random.default_rng(3)
    sigma = np.array([0.01, 0.02, 0.05])
    images = rng.normal(0, 1, (64, 32, 32, 3)) * sigma
    images[:, 12:20, 12:20, :] += 5.0                          # a bright source in the middle, not in the border
    np.testing.assert_allclose(background_noise(images), sigma, rtol=0.05)


@pytest.fixture(scope="module")
def tiny_survey(tmp_path_factory, params):
    from galaxyprop.mock.survey import simulate_survey

    root = tmp_path_factory.mktemp("tiny_encoder_survey")
    config = mock_config(params, n_galaxies=360, n_jobs=1, **{"imaging.stamp_size": 32})
    simulate_survey(config, root / "astroclip.h5", root / "fastspec.fits", progress=False)
    return root / "astroclip.h5"


@pytest.mark.slow
def test_tiny_train_then_embed_lowers_the_contrastive_loss(tiny_survey, tmp_path):
    L.seed_everything(0, verbose=False)
    with AstroclipFile(tiny_survey) as file:
        n = file.n_rows
        softening = background_noise(file.images(np.arange(64)))
    rows = np.random.default_rng(0).permutation(n)
    splits = {"train": rows[:240], "val": rows[240:300], "test": rows[300:]}
    # a softer logit scale than AstroCLIP's 15.5 for 240 pairs: at 15.5 this tiny model collapses to chance
    model = ContrastiveModel({**SMALL, "softening": softening.tolist(), "learning_rate": 1e-3, "logit_scale": 5.0},
                             max_epochs=10)
    data = PairDataModule(tiny_survey, splits, batch_size=30, min_image_size=24, seed=0)
    trainer = L.Trainer(max_epochs=10, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    before = trainer.validate(model, datamodule=data, verbose=False)[0]["val_loss"]
    trainer.fit(model, datamodule=data)
    after = trainer.validate(model, datamodule=data, verbose=False)[0]["val_loss"]
    assert after < before - 0.3, (before, after)
    assert after < math.log(30) - 0.2, after                  # better than chance (batches of 30)

    held_out = np.sort(np.r_[splits["val"], splits["test"]])   # 120 galaxies the model never trained on
    with AstroclipFile(tiny_survey) as file:
        images, (spectra, _) = file.images(held_out), file.spectra(held_out)
    image_embedding = model.image_embedder().transform(images)
    spectrum_embedding = model.spectrum_embedder().transform(spectra)
    assert image_embedding.shape == spectrum_embedding.shape == (len(held_out), SMALL["embedding_dim"])
    np.testing.assert_allclose(np.linalg.norm(image_embedding, axis=1), 1.0, rtol=1e-5)
    # channels-last and channels-first cutouts give the same embedding; batching does not matter
    np.testing.assert_allclose(model.image_embedder().transform(np.moveaxis(images, -1, 1), batch_size=7),
                               image_embedding, atol=1e-5)
    retrieval = retrieval_metrics(image_embedding, spectrum_embedding)
    assert retrieval["image_to_spectrum_top5"] > 2 * retrieval["chance_top5"]


def test_pair_dataset_names_the_file_rows_of_a_bad_image(tiny_survey, tmp_path):
    import shutil

    import h5py

    broken = tmp_path / "broken.h5"
    shutil.copyfile(tiny_survey, broken)
    with h5py.File(broken, "r+") as handle:
        handle["images"][7, 3, 3, 0] = np.nan
    data = PairDataModule(broken, {"train": np.arange(64), "val": np.arange(3, 11)}, batch_size=8)
    with pytest.raises(GalaxypropError, match=r"broken.h5: images row 7 has NaN"):
        next(iter(data.val_dataloader()))


def test_saved_encoder_round_trips_and_equal_models_give_equal_files(tmp_path):
    torch.manual_seed(0)
    model = ContrastiveModel({**SMALL, "softening": [0.1, 0.2, 0.3]})
    model.save(tmp_path / "a.pt")
    torch.manual_seed(0)                                   # an independently built, equal model
    twin = ContrastiveModel({**SMALL, "softening": [0.1, 0.2, 0.3]})
    twin.save(tmp_path / "b.pt")
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()   # DVC sees no change
    torch.manual_seed(1)
    ContrastiveModel({**SMALL, "softening": [0.1, 0.2, 0.3]}).save(tmp_path / "c.pt")
    assert (tmp_path / "c.pt").read_bytes() != (tmp_path / "a.pt").read_bytes()   # other weights, other bytes
    # the feature encoder the embed stage pickles (image embedder) is byte-stable too
    from galaxyprop.data.io import save_object

    save_object(model.eval().image_embedder(), tmp_path / "a.joblib")
    save_object(twin.eval().image_embedder(), tmp_path / "b.joblib")
    assert (tmp_path / "a.joblib").read_bytes() == (tmp_path / "b.joblib").read_bytes()
    loaded = ContrastiveModel.load(tmp_path / "a.pt")
    assert loaded.config == model.config and not loaded.training
    images = np.random.default_rng(0).normal(0, 1, (4, 32, 32, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded.image_embedder().transform(images),
                                  model.eval().image_embedder().transform(images))
    with pytest.raises(GalaxypropError, match="no trained encoder"):
        ContrastiveModel.load(tmp_path / "absent.pt")
