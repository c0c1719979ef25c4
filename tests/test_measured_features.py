"""sep-measured cutout features (`MeasuredFeatures`) against GalSim galaxies of known flux, size and shape."""

from __future__ import annotations

import pickle

import galsim
import numpy as np
import pytest

from galaxyprop.errors import GalaxypropError
from galaxyprop.features.measured import MeasuredFeatures

PIXEL_SCALE, STAMP = 0.262, 64
SKY_SIGMA = np.array([0.004, 0.006, 0.012])      # nanomaggies per pixel in g, r, z (the mock's depths)
FLUX = np.array([4.0, 8.0, 15.0])                # nanomaggies: g-r = 0.753, r-z = 0.683, so a band mix-up shows
PSF = galsim.Moffat(beta=3.5, fwhm=1.2)


def draw(hlr: float, flux=FLUX, q: float = 1.0, n: float = 1.0, seed: int = 0, sigma=SKY_SIGMA, shift=(0.0, 0.0),
         size: int = STAMP):
    """(size, size, 3) Sersic galaxy (exponential for n = 1) with Gaussian sky noise, and each band's
    half-light radius (arcsec) of the PSF-convolved profile as GalSim measures it on the stamp."""
    rng = np.random.default_rng(seed)
    image, hlrs = np.empty((size, size, 3), np.float32), []
    for i, f in enumerate(flux):
        profile = galsim.Exponential(half_light_radius=hlr, flux=f) if n == 1 else galsim.Sersic(
            n=n, half_light_radius=hlr, flux=f)
        drawn = galsim.Convolve(profile.shear(q=q, beta=0.6 * galsim.radians), PSF).drawImage(
            nx=size, ny=size, scale=PIXEL_SCALE, offset=shift)
        hlrs.append(drawn.calculateHLR())
        image[..., i] = drawn.array + rng.normal(0.0, sigma[i], (size, size))
    return image, np.array(hlrs)


def aperture_noise(band: int, radius_px: float) -> float:
    """Flux noise (nanomaggies) in a circle of `radius_px`: the sky noise of its pixels plus that of
    the sky level subtracted from all of them (the median of the 1792-pixel outer ring)."""
    area = np.pi * radius_px**2
    return SKY_SIGMA[band] * np.sqrt(area + np.pi / 2 * area**2 / (STAMP**2 - (STAMP - 16) ** 2))


def features(images, encoder=None) -> dict[str, np.ndarray]:
    encoder = encoder or MeasuredFeatures()
    out = encoder.transform(np.stack(images))
    assert out.shape == (len(images), len(encoder.names)) and out.dtype == np.float32
    return dict(zip(encoder.names, out.T))


def kron_flux(f: dict, band: str) -> np.ndarray:
    return 10.0 ** (-0.4 * (f[f"kron_mag_{band}"] - 22.5))


def test_names_are_stable_and_the_encoder_pickles():
    encoder = MeasuredFeatures(aperture_radii=(4.0, 8.0))
    assert encoder.input_kind == "images"
    assert encoder.names[:5] == ["kron_mag_g", "kron_mag_r", "kron_mag_z", "kron_g-r", "kron_r-z"]
    assert {"ap4_mag_r", "ap8_g-r", "log_r50_z", "c_r", "axis_ratio"} <= set(encoder.names)
    assert len(set(encoder.names)) == len(encoder.names)
    assert pickle.loads(pickle.dumps(encoder)) == encoder
    assert 15 <= len(MeasuredFeatures().names) <= 25


@pytest.mark.parametrize("hlr", [0.5, 1.0, 1.5])
def test_kron_flux_recovers_the_injected_flux_in_every_band(hlr):
    images, hlrs = zip(*(draw(hlr, q=0.7, seed=seed) for seed in range(6)))
    f = features(images)
    for j, band in enumerate("grz"):
        # an exponential's Kron aperture holds ~94-98% of its light; the noise in an aperture of
        # ~3 convolved half-light radii, averaged over the 6 stamps, is the rest of the allowance
        noise = aperture_noise(j, 3.0 * hlrs[0][j] / PIXEL_SCALE) / FLUX[j] / np.sqrt(len(images))
        ratio = kron_flux(f, band).mean() / FLUX[j]
        assert 0.93 - 3 * noise < ratio < 1.0 + 3 * noise, (band, ratio, noise)


@pytest.mark.parametrize("hlr", [0.5, 1.0, 2.0])
def test_half_light_radius_matches_galsim_and_keeps_the_size_order(hlr):
    images, hlrs = zip(*(draw(hlr, flux=5 * FLUX, seed=seed) for seed in range(4)))
    f = features(images)
    for j, band in enumerate("grz"):
        measured = 10.0 ** f[f"log_r50_{band}"]
        np.testing.assert_allclose(measured, hlrs[0][j], rtol=0.1)


def test_sizes_order_and_the_largest_when_the_cutouts_are_sky_subtracted():
    sizes = [0.5, 1.0, 2.0, 3.0]
    images, hlrs = zip(*(draw(hlr, flux=5 * FLUX, seed=k) for k, hlr in enumerate(sizes)))
    for encoder in (MeasuredFeatures(), MeasuredFeatures(subtract_sky=False)):
        r50 = 10.0 ** features(images, encoder)["log_r50_r"]
        assert np.all(np.diff(r50) > 0), r50
    # without the stamp's own sky estimate (biased by the wings of a 3" galaxy) even 3" is recovered
    np.testing.assert_allclose(r50, np.array(hlrs)[:, 1], rtol=0.1)


def test_concentration_separates_de_vaucouleurs_from_exponential():
    exponential = features([draw(1.0, flux=5 * FLUX, seed=s)[0] for s in range(3)])["c_r"]
    de_vaucouleurs = features([draw(1.0, flux=5 * FLUX, n=4.0, seed=s)[0] for s in range(3)])["c_r"]
    assert exponential.max() < de_vaucouleurs.min(), (exponential, de_vaucouleurs)


@pytest.mark.parametrize("q", [0.4, 0.7, 1.0])
def test_axis_ratio_recovers_the_shear_of_a_bright_galaxy(q):
    f = features([draw(2.0, flux=5 * FLUX, q=q, seed=s)[0] for s in range(3)])
    np.testing.assert_allclose(f["axis_ratio"], q, atol=0.1)


def test_aperture_magnitudes_match_the_enclosed_flux():
    images = [draw(1.0, flux=3 * FLUX, q=0.6, seed=s)[0] for s in range(4)]
    f = features(images)
    fine = 8                                        # the noiseless r image, 8x oversampled, summed within each radius
    drawn = galsim.Convolve(galsim.Exponential(half_light_radius=1.0, flux=3 * FLUX[1]).shear(q=0.6, beta=0.6 * galsim.radians),
                            PSF).drawImage(nx=STAMP * fine, ny=STAMP * fine, scale=PIXEL_SCALE / fine).array
    y, x = (np.mgrid[:STAMP * fine, :STAMP * fine] - (STAMP * fine - 1) / 2) / fine
    for radius in MeasuredFeatures().aperture_radii:
        truth = 22.5 - 2.5 * np.log10(drawn[np.hypot(x, y) < radius].sum())
        noise = 1.0857 * aperture_noise(1, radius) / (3 * FLUX[1]) / np.sqrt(len(images))
        assert abs(f[f"ap{radius:g}_mag_r"].mean() - truth) < 3 * noise + 0.01, (radius, f[f"ap{radius:g}_mag_r"], truth)


def test_colours_equal_the_injected_flux_ratios():
    images, hlrs = zip(*(draw(1.0, flux=3 * FLUX, q=0.6, seed=s) for s in range(8)))
    f = features(images)
    for name, (a, b) in {"g-r": (0, 1), "r-z": (1, 2)}.items():
        truth = -2.5 * np.log10(FLUX[a] / FLUX[b])
        for aperture, radius in (("kron", 3.0 * hlrs[0][1] / PIXEL_SCALE), ("ap6", 6.0)):
            # magnitude noise of the colour in the aperture, averaged over the stamps
            sigma = 1.0857 * np.hypot(*(aperture_noise(k, radius) / (3 * FLUX[k]) for k in (a, b))) / np.sqrt(len(images))
            measured = f[f"{aperture}_{name}"]
            assert abs(measured.mean() - truth) < 3 * sigma + 0.01, (aperture, name, measured, truth, sigma)


def test_a_neighbour_is_masked_out_of_the_galaxy_photometry():
    images = [draw(1.0, flux=2 * FLUX, q=0.7, seed=s)[0] for s in range(5)]
    neighbour = np.stack([galsim.Convolve(galsim.Exponential(half_light_radius=0.6, flux=f), PSF).drawImage(
        nx=STAMP, ny=STAMP, scale=PIXEL_SCALE, offset=(16.0, 0.0)).array for f in 2 * FLUX * [1.0, 0.7, 0.5]], -1)
    y, x = np.mgrid[:STAMP, :STAMP] - (STAMP - 1) / 2
    # unmasked, the neighbour would add > 20% (0.2 mag) to the galaxy's flux within 15 px
    assert neighbour[np.hypot(x, y) < 15, 1].sum() > 0.2 * 2 * FLUX[1]
    alone, crowded = features(images), features([im + neighbour for im in images])
    for name in ("kron_mag_r", "kron_g-r", "ap6_mag_r", "log_r50_r", "axis_ratio"):
        assert np.abs(crowded[name] - alone[name]).max() < 0.06, (name, crowded[name] - alone[name])


def test_pure_noise_and_empty_stamps_give_finite_features():
    rng = np.random.default_rng(3)
    stamps = np.concatenate([rng.normal(0.0, 0.01, (4, 3, STAMP, STAMP)), np.zeros((1, 3, STAMP, STAMP)),
                             rng.normal(0.05, 0.01, (1, 3, STAMP, STAMP))])   # the last with a sky pedestal
    out = MeasuredFeatures().transform(stamps)
    assert np.isfinite(out).all()
    noise = dict(zip(MeasuredFeatures().names, out.T))
    assert (noise["kron_mag_r"][:4] > 22.5).all()       # no flux: fainter than 1 nanomaggie


def test_a_sky_pedestal_is_subtracted():
    image = draw(1.0, seed=1)[0]
    plain, raised = features([image, image + 0.02])["kron_mag_r"]    # 0.02 nmgy/px: ~3x the sky noise
    assert abs(raised - plain) < 0.03


def test_a_large_stamp_gets_a_background_mesh_and_the_same_features_as_its_centre():
    big = draw(1.0, flux=3 * FLUX, q=0.6, seed=5, size=160)[0]
    encoder = MeasuredFeatures()
    assert min(big.shape[:2]) >= 2 * encoder.background_box
    np.testing.assert_allclose(encoder.transform(big[None]), encoder.transform(big[None, 48:112, 48:112]), atol=0.05)


def test_bad_pixels_and_shapes_raise_one_line_errors():
    images = np.stack([draw(1.0, seed=s)[0] for s in range(3)])
    images[2, 10, 20, 1] = np.nan
    with pytest.raises(GalaxypropError, match="row 2 has NaN") as error:
        MeasuredFeatures().transform(images)
    assert "\n" not in str(error.value)
    for shape in [(2, STAMP, STAMP), (2, STAMP, STAMP, 4), (2, 3, 8, 8)]:
        with pytest.raises(GalaxypropError):
            MeasuredFeatures().transform(np.zeros(shape, np.float32))


def test_quarter_turns_flips_and_layout_do_not_change_the_features():
    images = np.stack([draw(hlr, q=0.5, seed=s, shift=(0.3, -0.2))[0] for s, hlr in enumerate([0.5, 1.0, 1.5, 2.0])])
    encoder = MeasuredFeatures()
    base = encoder.transform(images)
    np.testing.assert_array_equal(encoder.transform(np.moveaxis(images, -1, 1)), base)
    for turned in (np.rot90(images, 1, axes=(1, 2)), np.rot90(images, 2, axes=(1, 2)), images[:, ::-1]):
        np.testing.assert_allclose(encoder.transform(turned), base, atol=0.03)


def test_a_cutout_gets_the_same_features_in_any_batch():
    images = np.stack([draw(0.8 + 0.2 * s, seed=s)[0] for s in range(5)])
    encoder = MeasuredFeatures()
    together = encoder.transform(images)
    np.testing.assert_array_equal(encoder.transform(images[3:4]), together[3:4])
    np.testing.assert_array_equal(encoder.transform(images[::-1])[::-1], together)
