"""Galaxy SEDs: the kcorrect templates, Calzetti dust attenuation, smooth multiplicative perturbations."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import numpy as np

#: Star-formation-history bins of the kcorrect templates (M300, M1000, INTSFH): ages in Gyr
YOUNG_BIN_GYR, MIDDLE_BIN_GYR = (0.0, 0.3), (0.3, 1.0)
RECENT_SFR_YEARS = 3e8
#: Least mass formed in the last 300 Myr per unit mass formed, so that log SFR stays finite for template
#: sets with M300 = 0 exactly; below every kcorrect-default-v4 template's (the oldest: 2.5e-14), so
#: for that set it never binds.
RECENT_FRACTION_FLOOR = 1e-14


@dataclass(frozen=True)
class TemplateSet:
    """kcorrect's templates: rest-frame f_lambda (erg/s/cm^2/A) at 10 pc per solar mass formed.

    With coefficients c, the SED placed at redshift z without distance dimming gives the observed
    maggies (kcorrect's convention); the stellar mass is c . mremain times 10^(0.4 DM).
    """

    wave: np.ndarray      # (n_wave,) Angstrom
    flux: np.ndarray      # (n_template, n_wave)
    mremain: np.ndarray   # (n_template,) surviving stellar mass per solar mass formed
    intsfh: np.ndarray    # (n_template,) mass formed (1 for the v4 templates)
    mets: np.ndarray      # (n_template,) metallicity Z of the surviving stars
    m300: np.ndarray      # (n_template,) mass formed in the last 300 Myr
    m1000: np.ndarray     # (n_template,) mass formed in the last 1 Gyr

    def sed(self, coeffs: np.ndarray) -> np.ndarray:
        """Rest-frame f_lambda of non-negative template mixtures, (n, n_wave)."""
        return np.atleast_2d(coeffs) @ self.flux

    def stellar_mass(self, coeffs: np.ndarray, distance_modulus: np.ndarray) -> np.ndarray:
        return np.atleast_2d(coeffs) @ self.mremain * 10.0 ** (0.4 * np.asarray(distance_modulus))

    def metallicity(self, coeffs: np.ndarray) -> np.ndarray:
        """Mass-weighted Z of the surviving stars, (c . mremain mets) / (c . mremain): kcorrect's 'metallicity'."""
        coeffs = np.atleast_2d(coeffs)
        return coeffs @ (self.mremain * self.mets) / (coeffs @ self.mremain)

    def star_formation_rate(self, coeffs: np.ndarray, distance_modulus: np.ndarray) -> np.ndarray:
        """Mean SFR over the last 300 Myr (Msun/yr): c . m300 times 10^(0.4 DM) over 3e8 yr.

        kcorrect's b300 * intsfh / 3e8, with c . m300 floored at RECENT_FRACTION_FLOOR (c . intsfh).
        """
        coeffs = np.atleast_2d(coeffs)
        recent = np.maximum(coeffs @ self.m300, RECENT_FRACTION_FLOOR * (coeffs @ self.intsfh))
        return recent * 10.0 ** (0.4 * np.asarray(distance_modulus)) / RECENT_SFR_YEARS

    def template_ages(self, old_age_gyr: float) -> np.ndarray:
        """Each template's age (Gyr) weighted by mass formed, from its three-bin history.

        Bins [0, 0.3] and [0.3, 1] Gyr hold M300 and M1000 - M300 at their constant-SFH mean ages
        (0.15, 0.65 Gyr); the rest, INTSFH - M1000, formed earlier at mean age `old_age_gyr`.
        """
        young = self.m300
        middle = np.clip(self.m1000 - self.m300, 0.0, None)
        old = np.clip(self.intsfh - self.m1000, 0.0, None)
        return (young * np.mean(YOUNG_BIN_GYR) + middle * np.mean(MIDDLE_BIN_GYR) + old * old_age_gyr) / (
            young + middle + old)

    def mass_weighted_age(self, coeffs: np.ndarray, old_age_gyr: float) -> np.ndarray:
        """Age of template mixtures (Gyr), weighted by mass formed (c . intsfh), not by surviving mass."""
        coeffs = np.atleast_2d(coeffs)
        formed = coeffs * self.intsfh
        return formed @ self.template_ages(old_age_gyr) / formed.sum(axis=1)


@functools.lru_cache(maxsize=4)
def load_templates(name: str = "kcorrect-default-v4") -> TemplateSet:
    """Read `<name>.fits` from the kcorrect package: SEDs and the INTSFH, MREMAIN, METS, M300, M1000 HDUs."""
    import kcorrect
    from astropy.io import fits

    path = os.path.join(os.path.dirname(kcorrect.__file__), "data", "templates", f"{name}.fits")
    with fits.open(path) as hdus:
        row = hdus["FLUX"].data[0]
        wave = np.asarray(row["wave"], float)
        flux = np.asarray(row["flux"], float).reshape(-1, len(wave))
        per_template = {key.lower(): np.asarray(hdus[key].data, float)
                        for key in ("MREMAIN", "INTSFH", "METS", "M300", "M1000")}
    return TemplateSet(wave, flux, **per_template)


def calzetti_curve(wave: np.ndarray, r_v: float = 4.05) -> np.ndarray:
    """k(lambda) = A_lambda / E(B-V) of Calzetti et al. (2000) for the stellar continuum.

    Held at its 1200 A value further into the UV and clipped at zero in the infrared (~3 microns).
    """
    micron = np.clip(np.asarray(wave, float) / 1e4, 0.12, None)
    x = 1.0 / micron
    uv = 2.659 * (-2.156 + 1.509 * x - 0.198 * x**2 + 0.011 * x**3) + r_v
    ir = 2.659 * (-1.857 + 1.040 * x) + r_v
    return np.clip(np.where(micron < 0.63, uv, ir), 0.0, None)


def attenuation(wave: np.ndarray, ebv: np.ndarray) -> np.ndarray:
    """Transmission 10^(-0.4 E(B-V) k(lambda)), (n, n_wave) for one E(B-V) per galaxy."""
    return 10.0 ** (-0.4 * np.asarray(ebv, float)[:, None] * calzetti_curve(wave)[None, :])


def smooth_perturbation(wave: np.ndarray, amplitudes: np.ndarray, wave_range=(1000.0, 30000.0)) -> np.ndarray:
    """1 + sum_j a_j P_j(x): Legendre polynomials (j >= 1) in log wavelength over `wave_range`.

    `amplitudes` is (n, n_terms); outside the range the factor is held at its edge values.
    """
    lo, hi = np.log(wave_range[0]), np.log(wave_range[1])
    x = np.clip(2.0 * (np.log(wave) - lo) / (hi - lo) - 1.0, -1.0, 1.0)
    amplitudes = np.atleast_2d(amplitudes)
    basis = np.stack([np.polynomial.legendre.Legendre.basis(j + 1)(x) for j in range(amplitudes.shape[1])])
    return 1.0 + amplitudes @ basis
