"""The mock survey: physics identities, agreement with kcorrect and speclite, images vs catalogue, selection."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from astropy.io import fits

from galaxyprop.mock import imaging
from galaxyprop.mock.labels import observe
from galaxyprop.mock.population import PopulationSampler, component_seds
from galaxyprop.mock.survey import draw_survey, simulate_survey
from galaxyprop.physics.filters import load_filter
from galaxyprop.physics.kcorrection import band_maggies, kcorrection
from galaxyprop.physics.sed import load_templates

from conftest import mock_config

pytestmark = pytest.mark.slow   # simulation, servers or concurrency: left out of `make test-fast`

IDENTITY = -2.5 * np.log10(1.1)
SOUTH_ONLY = {"fields.south.fraction": 1.0, "fields.north.fraction": 0.0}


def sampled(config, n: int, seed: int = 3):
    templates = load_templates()
    sampler = PopulationSampler(config, templates)
    population = sampler.normalise(sampler.candidates(n, np.random.default_rng(seed)))
    return population, observe(population, config, templates), templates


def test_identity_holds_for_random_mock_seds(params):
    population, _, templates = sampled(mock_config(params), 200)
    bulge, disk = component_seds(population, templates)
    r = load_filter("sdss_r0")
    np.testing.assert_allclose(kcorrection(templates.wave, bulge + disk, 0.1, r, r, 0.1), IDENTITY, atol=1e-10)


def test_labels_inside_the_template_span_agree_with_kcorrect(params):
    """Same SED, two implementations: our labels vs kcorrect's K from the true coefficients."""
    import kcorrect.kcorrect
    from astropy.cosmology import FlatLambdaCDM

    no_extras = {"population.dust_ebv_mean": {"red": 0.0, "blue": 0.0},
                 "population.perturbation": {"amplitude": 0.0, "n_terms": 2}, **SOUTH_ONLY}
    population, labels, _ = sampled(mock_config(params, **no_extras), 1200)
    z = population.table["z"]
    rows = z < 0.3          # where FastSpecFit's nearest bands for ^{0.1}g, r, z are g, r, z
    coeffs = (population.coeffs_bulge + population.coeffs_disk)[rows]
    kc = kcorrect.kcorrect.Kcorrect(responses=["decam_g", "decam_r", "decam_z"],
                                    responses_out=["sdss_g0", "sdss_r0", "sdss_z0"],
                                    responses_map=["decam_g", "decam_r", "decam_z"],
                                    redshift_range=[0.0, 0.32], nredshift=321,
                                    cosmo=FlatLambdaCDM(H0=100, Om0=0.3))
    theirs = kc.kcorrect(redshift=z[rows], coeffs=coeffs, band_shift=0.1)
    ours = np.column_stack([labels[f"KCORR01_SDSS_{b}"][rows] for b in "GRZ"])
    assert rows.sum() > 150
    np.testing.assert_allclose(ours, theirs, atol=0.005)
    # The r-band absolute magnitude is the drawn one; the stellar mass is kcorrect's.
    np.testing.assert_allclose(labels["ABSMAG01_SDSS_R"], population.table["absmag_r01"], atol=1e-6)
    mass = kc.derived(redshift=z[rows], coeffs=coeffs)["mremain"]
    np.testing.assert_allclose(labels["LOGMSTAR"][rows], np.log10(mass), atol=2e-3)


def test_template_mismatch_is_real(params):
    """Dust and perturbations move the default labels off the template span."""
    population, labels, _ = sampled(mock_config(params, **SOUTH_ONLY), 300)
    z = population.table["z"]
    clean = observe(population.__class__({**population.table, "ebv": np.zeros(len(z))}, population.coeffs_bulge,
                                         population.coeffs_disk, np.zeros_like(population.perturbation)),
                    mock_config(params, **SOUTH_ONLY), load_templates())
    shift = np.abs(labels["KCORR01_SDSS_R"] - clean["KCORR01_SDSS_R"])
    assert np.median(shift[z > 0.15]) > 0.003


def test_photometry_agrees_with_speclite(params):
    """Our band integrals vs speclite's own DECam/BASS/MzLS/WISE curves, to the level the curves differ."""
    import speclite.filters

    population, _, templates = sampled(mock_config(params), 40)
    bulge, disk = component_seds(population, templates)
    z = population.table["z"]
    pairs = {"decam_g": "decam2014-g", "decam_r": "decam2014-r", "decam_z": "decam2014-z",
             "bass_g": "BASS-g", "bass_r": "BASS-r", "mzls_z": "MzLS-z", "wise_w1": "wise2010-W1",
             "sdss_r0": "sdss2010-r"}
    for ours_name, theirs_name in pairs.items():
        ours = -2.5 * np.log10(band_maggies(templates.wave, bulge + disk, z, load_filter(ours_name)))
        band = speclite.filters.load_filter(theirs_name)
        theirs = []
        for sed, zi in zip(bulge + disk, z, strict=True):
            wave = templates.wave * (1 + zi)
            inside = (wave > band.wavelength[0] - 200) & (wave < band.wavelength[-1] + 200)
            theirs.append(band.get_ab_magnitude(sed[inside] / (1 + zi), wave[inside]))
        difference = ours - np.array(theirs)
        # Constant offsets are the curves' different throughputs (atmosphere, CCD); the scatter is tiny.
        tolerance = 0.08 if ours_name == "wise_w1" else 0.05
        assert abs(np.median(difference)) < tolerance, ours_name
        assert np.std(difference) < 0.02, ours_name


def test_population_blocks_observed_in_parallel_draw_the_same_survey(params, monkeypatch):
    """Blocks observed two at a time in worker processes keep every galaxy, and the generator's state
    after the last block used (the fibre seeing is drawn after the blocks), of one block at a time."""
    from galaxyprop.mock import survey as survey_module

    monkeypatch.setattr(survey_module, "DRAW_BLOCK", 40)         # ~7 galaxies pass per block: 6 blocks
    one, two = (draw_survey(mock_config(params, n_galaxies=36, n_jobs=n), progress=False) for n in (1, 2))
    assert len(one.population) == len(two.population) == 36
    for key in one.population.table:
        assert np.array_equal(np.asarray(one.population.table[key]), np.asarray(two.population.table[key])), key
    for key in one.photometry:
        assert np.array_equal(one.photometry[key], two.photometry[key]), key
    assert np.array_equal(one.population.coeffs_disk, two.population.coeffs_disk)
    assert np.array_equal(one.targetid, two.targetid)


def test_redshift_distribution_and_magnitude_limit(params):
    survey = draw_survey(mock_config(params, n_galaxies=1500), progress=False)
    z = survey.population.table["z"]
    assert 0.17 < np.median(z) < 0.26 and np.percentile(z, 99) > 0.4 and z.max() < 0.8
    r = 22.5 - 2.5 * np.log10(survey.photometry["flux_r"])
    assert r.max() < 19.5 and np.percentile(r, 90) > 18.5
    red = survey.population.table["red"]
    assert 0.2 < red.mean() < 0.7
    gr = survey.photometry["ABSMAG01_SDSS_G"] - survey.photometry["ABSMAG01_SDSS_R"]
    assert np.median(gr[red]) - np.median(gr[~red]) > 0.2          # bimodal colours
    # Colour gradient: bulges are redder and more compact than disks.
    t = survey.population.table
    assert np.median(t["bulge_hlr_arcsec"]) < np.median(t["disk_hlr_arcsec"])
    bulge_gr = -2.5 * np.log10(survey.photometry["flux_bulge_g"] / survey.photometry["flux_bulge_r"])
    disk_gr = -2.5 * np.log10(survey.photometry["flux_disk_g"] / survey.photometry["flux_disk_r"])
    assert np.median(bulge_gr - disk_gr) > 0.1


@pytest.fixture(scope="module")
def noiseless_survey(tmp_path_factory, params):
    root = tmp_path_factory.mktemp("noiseless")
    config = mock_config(params, n_galaxies=30, noise=False, chunk_size=10, n_jobs=1, seed=5,
                         **{"imaging.stamp_size": 152, "imaging.neighbours": {"mean_count": 0.0}})
    survey = simulate_survey(config, root / "astroclip.h5", root / "fastspec.fits", progress=False)
    return root, survey


def test_noiseless_image_flux_matches_catalogue(noiseless_survey):
    root, survey = noiseless_survey
    catalog = fits.getdata(root / "fastspec.fits", "METADATA")
    with h5py.File(root / "astroclip.h5") as handle:
        images = handle["images"][:]
        assert np.array_equal(handle["targetids"][:], catalog["TARGETID"])
    t = survey.population.table
    # Galaxies that fit the 40" stamp: deV truncated at 8 hlr, exponential within ~11 scale lengths.
    small = (t["bulge_hlr_arcsec"] < 2.4) & (t["disk_hlr_arcsec"] < 3.0)
    assert small.sum() > 20
    for i, band in enumerate("GRZ"):
        np.testing.assert_allclose(images[small, :, :, i].sum(axis=(1, 2)), catalog[f"FLUX_{band}"][small],
                                   rtol=0.01)


def test_spectra_are_on_the_desi_grid_and_follow_the_sed(noiseless_survey):
    root, survey = noiseless_survey
    with h5py.File(root / "astroclip.h5") as handle:
        spectra = handle["spectra"][:]
    assert spectra.shape == (30, 7781, 1)
    # r-band flux of the spectrum is below the total (fibre) but of the same order.
    from galaxyprop.data.astroclip import DESI_WAVE
    r = load_filter("decam_r")
    fiber = band_maggies(DESI_WAVE, spectra[:, :, 0] * 1e-17, 0.0, r) * 1e9
    fraction = fiber / survey.photometry["flux_r"]
    assert np.all((fraction > 0.02) & (fraction < 0.8))


def test_north_and_south_differ_in_psf_and_noise(params):
    config = mock_config(params)
    south, north = config.field_named("south"), config.field_named("north")
    for band in "grz":
        assert north.seeing_fwhm[band] >= south.seeing_fwhm[band]
        assert imaging.sky_sigma_per_pixel(north, band, 0.262) > imaging.sky_sigma_per_pixel(south, band, 0.262)
    survey = draw_survey(mock_config(params, n_galaxies=400), progress=False)
    t = survey.population.table
    is_north = t["field"] == "north"
    assert 0.25 < is_north.mean() < 0.55
    assert np.median(t["seeing_r"][is_north]) > np.median(t["seeing_r"][~is_north]) + 0.2


def test_simulation_is_deterministic_across_workers(tmp_path, params):
    files = []
    for n_jobs, chunk in ((1, 7), (2, 4)):
        config = mock_config(params, n_galaxies=12, n_jobs=n_jobs, chunk_size=chunk,
                             **{"imaging.stamp_size": 24})
        path = tmp_path / f"run{n_jobs}.h5"
        simulate_survey(config, path, tmp_path / f"run{n_jobs}.fits", progress=False)
        files.append(path)
    with h5py.File(files[0]) as a, h5py.File(files[1]) as b:
        for key in ("images", "spectra", "spectra_ivar", "targetids"):
            assert np.array_equal(a[key][:], b[key][:]), key
