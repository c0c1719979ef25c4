"""Noiseless photometry and FastSpecFit-like labels of mock galaxies, from their true SEDs."""

from __future__ import annotations

import numpy as np

from galaxyprop.mock.config import CATALOG_BANDS, LABEL_BANDS, MockConfig
from galaxyprop.mock.population import BAND_SHIFT, Population, component_seds
from galaxyprop.physics import cosmology
from galaxyprop.physics.filters import load_filter
from galaxyprop.physics.kcorrection import band_maggies, shifted_band_maggies
from galaxyprop.physics.sed import TemplateSet

NANOMAGGIES_PER_MAGGY = 1e9
SDSS_RESPONSES = {"g": "sdss_g0", "r": "sdss_r0", "z": "sdss_z0"}
#: Solar metallicity for ZZSUN: the Padova-isochrone value (Girardi et al. 2000) FSPS uses (zsol_padova),
#: so near FastSpecFit's; the BC03 (Padova 1994) models of the kcorrect templates call Z = 0.02 solar.
Z_SUN = 0.019


def nearest_observed_band(z: np.ndarray, responses: dict[str, str], rest_response: str) -> np.ndarray:
    """Per galaxy, the observed band whose rest-frame wavelength is nearest the shifted output band.

    FastSpecFit's choice: minimise |lambda_R / (1 + z) - lambda_Q / (1 + band_shift)|.
    """
    names = list(responses)
    observed = np.array([load_filter(responses[b]).pivot_wavelength for b in names])
    target = load_filter(rest_response).pivot_wavelength / (1.0 + BAND_SHIFT)
    return np.asarray(names)[np.argmin(np.abs(observed[None, :] / (1.0 + z[:, None]) - target), axis=1)]


def observe(population: Population, config: MockConfig, templates: TemplateSet) -> dict[str, np.ndarray]:
    """Catalogue fluxes (total and per component, nanomaggies) and the labels of each galaxy.

    Keys: `flux_<band>`, `flux_bulge_<band>`, `flux_disk_<band>` for g, r, z, W1;
    `KCORR01_SDSS_<X>`, `ABSMAG01_SDSS_<X>` (h = 1) for X in G, R, Z; from the template mixture
    c = coeffs_bulge + coeffs_disk (see TemplateSet): `LOGMSTAR` (surviving mass, log10 Msun / h^2),
    `ZZSUN` (log10 of the surviving stars' mass-weighted Z over Z_SUN), `SFR` (mean over the last
    300 Myr, Msun / yr / h^2) and `AGE` (Gyr, weighted by mass formed).
    """
    wave, table = templates.wave, population.table
    z, n = table["z"], len(population)
    bulge, disk = component_seds(population, templates)
    total = bulge + disk
    out: dict[str, np.ndarray] = {}
    for band in CATALOG_BANDS:
        for part in ("bulge", "disk"):
            out[f"flux_{part}_{band}"] = np.zeros(n)
    for f in config.fields:
        here = table["field"] == f.name
        if not here.any():
            continue
        for band in CATALOG_BANDS:
            response = load_filter(f.filters[band])
            for part, sed in (("bulge", bulge), ("disk", disk)):
                out[f"flux_{part}_{band}"][here] = NANOMAGGIES_PER_MAGGY * band_maggies(
                    wave, sed[here], z[here], response)
    for band in CATALOG_BANDS:
        out[f"flux_{band}"] = out[f"flux_bulge_{band}"] + out[f"flux_disk_{band}"]

    dm = cosmology.distance_modulus(z, config.omega_m)
    for band in LABEL_BANDS:
        rest = SDSS_RESPONSES[band]
        rest_maggies = shifted_band_maggies(wave, total, load_filter(rest), BAND_SHIFT)
        observed_maggies = np.zeros(n)
        for f in config.fields:
            here = table["field"] == f.name
            nearest = nearest_observed_band(z, dict(f.filters), rest)
            for observed_band in CATALOG_BANDS:
                rows = here & (nearest == observed_band)
                observed_maggies[rows] = out[f"flux_{observed_band}"][rows] / NANOMAGGIES_PER_MAGGY
        out[f"KCORR01_SDSS_{band.upper()}"] = -2.5 * np.log10(observed_maggies / rest_maggies)
        out[f"ABSMAG01_SDSS_{band.upper()}"] = -2.5 * np.log10(rest_maggies) - dm
    coeffs = population.coeffs_bulge + population.coeffs_disk
    out["LOGMSTAR"] = np.log10(templates.stellar_mass(coeffs, dm))
    out["ZZSUN"] = np.log10(templates.metallicity(coeffs) / Z_SUN)
    out["SFR"] = templates.star_formation_rate(coeffs, dm)
    out["AGE"] = templates.mass_weighted_age(coeffs, config.old_population_age_gyr)
    return out
