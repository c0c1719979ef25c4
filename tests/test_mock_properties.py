"""The mock's physical labels (LOGMSTAR, ZZSUN, SFR, AGE): kcorrect's derived quantities, physical ordering."""

from __future__ import annotations

import astropy.units
import numpy as np
import pytest

from galaxyprop.mock.config import label_columns
from galaxyprop.mock.labels import Z_SUN, observe
from galaxyprop.mock.population import Population
from galaxyprop.mock.survey import draw_survey, fastspec_columns
from galaxyprop.physics import cosmology
from galaxyprop.physics.sed import load_templates

from conftest import mock_config

SOUTH_ONLY = {"fields.south.fraction": 1.0, "fields.north.fraction": 0.0}


def float32_exact(values: np.ndarray) -> np.ndarray:
    """Values kcorrect (which casts to float32) and we read identically."""
    return np.asarray(values, np.float32).astype(float)


class SameDistances:
    """The mock's distance moduli (h = 1) behind astropy's `distmod`, for kcorrect's `derived`."""

    def __init__(self, omega_m: float):
        self.omega_m = omega_m

    def distmod(self, z):
        return cosmology.distance_modulus(np.asarray(z, float), self.omega_m) * astropy.units.mag


def test_labels_are_kcorrect_derived_quantities(params):
    """Random mixtures through `observe` vs kcorrect's `derived`, same coefficients and distance factor."""
    import kcorrect.kcorrect

    config = mock_config(params, **SOUTH_ONLY)
    rng = np.random.default_rng(11)
    n = 300
    z = float32_exact(rng.uniform(0.01, 0.8, n))
    used = rng.uniform(size=(n, 5)) < 0.7
    used[np.arange(n), rng.integers(0, 5, n)] = True
    coeffs = float32_exact(10.0 ** rng.uniform(-9, -6, (n, 5)) * used)
    coeffs[0] = 0.0
    coeffs[0, 3] = 1e-7                    # the oldest template alone: the least recent star formation
    table = {"z": z, "field": np.full(n, "south"), "ebv": np.zeros(n)}
    bulge_share = rng.uniform(size=(n, 1))
    labels = observe(Population(table, coeffs * bulge_share, coeffs * (1 - bulge_share), np.zeros((n, 2))),
                     config, load_templates())
    labels = {k: v.astype(np.float32) for k, v in labels.items() if k.isupper()}   # as the catalogue stores them

    # kcorrect 5.1's derived(distance=...) fails (its `dm` is unset there), so give it a cosmology whose
    # distmod is ours: astropy evaluated on the float32 redshifts kcorrect passes loses ~1e-5 mag.
    kc = kcorrect.kcorrect.Kcorrect(responses=["sdss_r0"], redshift_range=[0.0, 0.8], nredshift=9,
                                    cosmo=SameDistances(config.omega_m))
    derived = kc.derived(redshift=z, coeffs=coeffs)
    np.testing.assert_allclose(labels["LOGMSTAR"], np.log10(derived["mremain"]), rtol=0, atol=1e-6)
    np.testing.assert_allclose(labels["ZZSUN"], np.log10(derived["metallicity"] / Z_SUN), atol=1e-6)
    np.testing.assert_allclose(labels["SFR"], derived["b300"] * derived["intsfh"] / 3e8, rtol=5e-7)
    ssfr = np.log10(labels["SFR"]) - labels["LOGMSTAR"]
    assert np.isfinite(ssfr).all() and ssfr[0] < -21 and ssfr.max() < -8


def test_template_ages_are_physical():
    templates = load_templates()
    ages = templates.template_ages(6.5)
    assert np.all((ages > 0) & (ages < 13.8))
    young, oldest = np.argmax(templates.m300), np.argmin(templates.m1000)
    assert templates.m300[young] == pytest.approx(1.0) and ages[young] == pytest.approx(0.15)
    assert ages.argmin() == young and ages.argmax() == oldest
    assert ages[oldest] == pytest.approx(6.5, abs=1e-3)
    # A mixture's age is its templates' ages weighted by mass formed.
    coeffs = np.array([[1.0, 0.0, 0.0, 3.0, 0.0]])
    np.testing.assert_allclose(templates.mass_weighted_age(coeffs, 6.5), (ages[0] + 3 * ages[3]) / 4)
    # The old population's age moves every template but the purely young one.
    shift = templates.template_ages(8.0) - ages
    assert shift[young] == pytest.approx(0.0) and np.all(np.delete(shift, young) > 0)


@pytest.mark.slow   # fresh processes, a server or a simulation: left out of `make test-fast`
def test_red_galaxies_are_older_more_metal_rich_and_quiescent(params):
    config = mock_config(params, n_galaxies=500)
    survey = draw_survey(config, progress=False)
    _, labels, _ = fastspec_columns(survey, config)
    assert set(labels) | {"Z"} == label_columns()     # what check_params lets a target read on the mock
    assert all(labels[k].dtype == np.float32 for k in ("ZZSUN", "SFR", "AGE"))
    red = survey.population.table["red"]
    values = {"AGE": labels["AGE"], "ZZSUN": labels["ZZSUN"],
              "SSFR": np.log10(labels["SFR"]) - labels["LOGMSTAR"]}
    assert all(np.isfinite(v).all() for v in values.values())
    assert np.all((labels["AGE"] > 0) & (labels["AGE"] < 13.8))
    for name, v in values.items():
        difference = v[red].mean() - v[~red].mean()
        error = np.hypot(v[red].std() / np.sqrt(red.sum()), v[~red].std() / np.sqrt((~red).sum()))
        sign = -1 if name == "SSFR" else 1
        assert sign * difference > 5 * error, name


def test_the_old_population_age_is_a_checked_knob(params):
    from galaxyprop.errors import GalaxypropError

    assert mock_config(params).old_population_age_gyr == 6.5
    assert mock_config(params, properties={"old_population_age_gyr": 9.0}).old_population_age_gyr == 9.0
    with pytest.raises(GalaxypropError, match="old_population_age_gyr must lie between 1 and 13.8"):
        mock_config(params, properties={"old_population_age_gyr": 0.5})
    with pytest.raises(GalaxypropError, match="mock.properties"):
        mock_config(params, properties={"old_age": 6.0})
