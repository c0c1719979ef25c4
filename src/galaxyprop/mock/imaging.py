"""Legacy-Surveys-like g,r,z cutouts drawn with GalSim, and the photometric noise they imply.

Bulge: de Vaucouleurs (Sersic n = 4, truncated at 8 half-light radii as the Tractor's deV),
disk: exponential; each sheared by its axis ratio at a common position angle, convolved with a
per-galaxy Moffat PSF, drawn in nanomaggies per 0.262" pixel, plus Gaussian sky noise whose
level follows the field's 5-sigma point-source depth.
"""

from __future__ import annotations

import numpy as np

from galaxyprop.mock.config import IMAGE_BANDS, SurveyField
from galaxyprop.physics.magnitudes import NANOMAGGIE_ZEROPOINT

GAUSSIAN_FWHM_PER_SIGMA = 2.3548
WISE_W1_FWHM = 6.1   # arcsec: W1 galaxies are unresolved, their noise is the point-source one
DEV_TRUNCATION = 8.0


def _point_source_sigma(depth: float) -> float:
    """1-sigma flux (nanomaggies) of a point source from its 5-sigma AB depth."""
    return 10.0 ** (-0.4 * (depth - NANOMAGGIE_ZEROPOINT)) / 5.0


def sky_sigma_per_pixel(field: SurveyField, band: str, pixel_scale: float) -> float:
    """Sky noise per pixel (nanomaggies) that gives the field's depth at its median seeing."""
    psf_sigma = field.seeing_fwhm[band] / GAUSSIAN_FWHM_PER_SIGMA
    noise_pixels = 4.0 * np.pi * psf_sigma**2 / pixel_scale**2
    return _point_source_sigma(field.depth[band]) / np.sqrt(noise_pixels)


def flux_sigma(field: SurveyField, band: str, seeing: np.ndarray, half_light_radius: np.ndarray,
               pixel_scale: float) -> np.ndarray:
    """Model-flux error of a galaxy: sky noise over its noise-equivalent area (Gaussian approximation)."""
    if band not in IMAGE_BANDS:
        return np.full(np.shape(half_light_radius), _point_source_sigma(field.depth[band]))
    sigma2 = (np.asarray(seeing) / GAUSSIAN_FWHM_PER_SIGMA) ** 2 + (np.asarray(half_light_radius) / 1.1774) ** 2
    return sky_sigma_per_pixel(field, band, pixel_scale) * np.sqrt(4.0 * np.pi * sigma2 / pixel_scale**2)


def galaxy_profile(flux_bulge: float, flux_disk: float, galaxy: dict):
    """The GalSim bulge + disk profile of one galaxy in one band (before the PSF)."""
    import galsim

    angle = galaxy["position_angle"] * galsim.radians
    hlr_b, hlr_d = galaxy["bulge_hlr_arcsec"], galaxy["disk_hlr_arcsec"]
    bulge = galsim.DeVaucouleurs(half_light_radius=hlr_b, flux=flux_bulge, trunc=DEV_TRUNCATION * hlr_b)
    disk = galsim.Exponential(half_light_radius=hlr_d, flux=flux_disk)
    return bulge.shear(q=galaxy["bulge_q"], beta=angle) + disk.shear(q=galaxy["disk_q"], beta=angle)


def draw_cutout(galaxy: dict, fluxes: dict, field: SurveyField, stamp: int, pixel_scale: float,
                moffat_beta: float, neighbours: dict, noise: bool) -> np.ndarray:
    """(stamp, stamp, 3) float32 g,r,z image in nanomaggies per pixel."""
    import galsim

    rng = np.random.default_rng(galaxy["seed"])
    offset = (galaxy["offset_x"], galaxy["offset_y"])
    extra = _neighbours(rng, stamp, pixel_scale, neighbours)
    image = np.empty((stamp, stamp, len(IMAGE_BANDS)), dtype=np.float32)
    for i, band in enumerate(IMAGE_BANDS):
        psf = galsim.Moffat(beta=moffat_beta, fwhm=galaxy[f"seeing_{band}"])
        canvas = galsim.ImageF(stamp, stamp, scale=pixel_scale)
        profile = galaxy_profile(fluxes[f"flux_bulge_{band}"], fluxes[f"flux_disk_{band}"], galaxy)
        galsim.Convolve(profile, psf).drawImage(canvas, offset=offset)
        for neighbour in extra:
            disk = galsim.Exponential(half_light_radius=neighbour["hlr"], flux=neighbour["flux"][band])
            galsim.Convolve(disk, psf).drawImage(canvas, offset=neighbour["offset"], add_to_image=True)
        image[..., i] = canvas.array
        if noise:
            image[..., i] += rng.normal(0.0, sky_sigma_per_pixel(field, band, pixel_scale),
                                        (stamp, stamp)).astype(np.float32)
    return image


def _neighbours(rng: np.random.Generator, stamp: int, pixel_scale: float, spec: dict) -> list[dict]:
    """Faint field galaxies around the target: Poisson number, random place, brightness and colour."""
    out = []
    for _ in range(rng.poisson(spec.get("mean_count", 0.0))):
        r_mag = rng.uniform(*spec["r_mag_range"])
        g_r, r_z = rng.uniform(0.3, 1.5), rng.uniform(0.2, 1.0)
        mags = {"g": r_mag + g_r, "r": r_mag, "z": r_mag - r_z}
        out.append({"hlr": rng.uniform(0.3, 1.2),
                    "offset": tuple(rng.uniform(-0.45 * stamp, 0.45 * stamp, size=2)),
                    "flux": {b: 10.0 ** (-0.4 * (m - NANOMAGGIE_ZEROPOINT)) for b, m in mags.items()}})
    return out
