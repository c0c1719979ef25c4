"""A BGS-Bright-like galaxy population: redshifts, luminosities, SEDs, dust and shapes.

Redshift and ^{0.1}r absolute magnitude (h = 1) are drawn from a Schechter luminosity function
over comoving volume and kept where the observed r < r_limit. Each galaxy is a red bulge plus a
disk with the galaxy's bluer SED; both are non-negative mixtures of the kcorrect templates, then
dust-attenuated (Calzetti) and multiplied by a smooth random perturbation, so that template fits
face a real mismatch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from galaxyprop.mock.config import MockConfig
from galaxyprop.physics import cosmology
from galaxyprop.physics.filters import load_filter
from galaxyprop.physics.kcorrection import kcorrection, shifted_band_maggies
from galaxyprop.physics.sed import TemplateSet, attenuation, smooth_perturbation

BAND_SHIFT = 0.1
REFERENCE_BAND = "sdss_r0"   # ^{0.1}r: the band of the luminosity function


@dataclass
class Population:
    """Per-galaxy truth. Coefficients give each component's intrinsic SED (kcorrect units)."""

    table: dict[str, np.ndarray]      # 1-D columns, one row per galaxy
    coeffs_bulge: np.ndarray          # (n, n_template)
    coeffs_disk: np.ndarray           # (n, n_template)
    perturbation: np.ndarray          # (n, n_terms) Legendre amplitudes

    def __len__(self) -> int:
        return len(self.table["z"])

    def take(self, rows) -> Population:
        return Population({k: v[rows] for k, v in self.table.items()}, self.coeffs_bulge[rows],
                          self.coeffs_disk[rows], self.perturbation[rows])

    @staticmethod
    def concatenate(parts: list[Population]) -> Population:
        return Population({k: np.concatenate([p.table[k] for p in parts]) for k in parts[0].table},
                          np.concatenate([p.coeffs_bulge for p in parts]),
                          np.concatenate([p.coeffs_disk for p in parts]),
                          np.concatenate([p.perturbation for p in parts]))


def component_seds(population: Population, templates: TemplateSet) -> tuple[np.ndarray, np.ndarray]:
    """Rest-frame f_lambda of the bulge and the disk, dust and perturbation applied, (n, n_wave) each."""
    wave = templates.wave
    screen = attenuation(wave, population.table["ebv"]) * smooth_perturbation(wave, population.perturbation)
    return templates.sed(population.coeffs_bulge) * screen, templates.sed(population.coeffs_disk) * screen


def schechter_cumulative(magnitudes: np.ndarray, m_star: float, alpha: float) -> np.ndarray:
    """Running integral of the Schechter function phi(M) dM over an ascending magnitude grid."""
    x = 10.0 ** (0.4 * (m_star - magnitudes))
    phi = x ** (alpha + 1.0) * np.exp(-x)
    return np.concatenate([[0.0], np.cumsum(0.5 * (phi[1:] + phi[:-1]) * np.diff(magnitudes))])


class PopulationSampler:
    """Draws galaxies that pass the r < r_limit selection of a field."""

    def __init__(self, config: MockConfig, templates: TemplateSet):
        self.config, self.templates = config, templates
        self.pop = config.population
        lf = self.pop["luminosity_function"]
        self.m_star, self.alpha = float(lf["m_star"]), float(lf["alpha"])
        self.evolution_q = float(lf.get("evolution_q", 0.0))
        self.m_grid = np.linspace(float(lf["m_bright"]), float(lf["m_faint"]), 2000)
        self.cumulative = schechter_cumulative(self.m_grid, self.m_star, self.alpha)
        self.z_grid = np.linspace(float(self.pop["z_min"]), float(self.pop["z_max"]), 400)
        volume = cosmology.comoving_volume_element(self.z_grid, config.omega_m)
        self.m_faint = self._faintest_selectable(self.z_grid)
        density = volume * np.interp(self.m_faint + self._brightening(self.z_grid), self.m_grid, self.cumulative)
        self.z_cdf = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]) * np.diff(self.z_grid))])
        self.z_cdf /= self.z_cdf[-1]
        ref = load_filter(REFERENCE_BAND)
        self.template_ref_maggies = shifted_band_maggies(templates.wave, templates.flux, ref, BAND_SHIFT)

    def _faintest_selectable(self, z: np.ndarray) -> np.ndarray:
        """Faintest ^{0.1}r absolute magnitude any template could have and still pass the cut."""
        flux = self.templates.flux
        n_t = len(flux)
        k_min = np.full(len(z), np.inf)
        for f in self.config.fields:
            band = load_filter(f.filters["r"])
            k = kcorrection(self.templates.wave, np.repeat(flux, len(z), axis=0), np.tile(z, n_t),
                            band, load_filter(REFERENCE_BAND), BAND_SHIFT).reshape(n_t, len(z))
            k_min = np.minimum(k_min, k.min(axis=0))
        margin = float(self.pop.get("selection_margin", 0.5))
        dm = cosmology.distance_modulus(z, self.config.omega_m)
        return float(self.pop["r_limit"]) - dm - k_min + margin

    def candidates(self, n: int, rng: np.random.Generator) -> Population:
        """`n` galaxies from the luminosity function, before the magnitude cut."""
        pop, morph = self.pop, self.config.morphology
        z = np.interp(rng.uniform(size=n), self.z_cdf, self.z_grid)
        # Draw M + Q (z - 0.1) from the z = 0.1 function: luminosity evolution shifts M* by -Q (z - 0.1).
        shift = self._brightening(z)
        faint = np.interp(np.interp(z, self.z_grid, self.m_faint) + shift, self.m_grid, self.cumulative)
        absmag = np.interp(rng.uniform(size=n) * faint, self.cumulative, self.m_grid) - shift
        colour = pop["red_fraction"]
        p_red = colour["max"] / (1.0 + np.exp((absmag - colour["m_mid"]) / colour["width"]))
        red = rng.uniform(size=n) < p_red

        mixtures = pop["template_mixtures"]
        bulge_light = self._mixture(mixtures["bulge"], n, rng)
        disk_light = np.where(red[:, None], self._mixture(mixtures["red_disk"], n, rng),
                              self._mixture(mixtures["blue_disk"], n, rng))
        bt = morph["bulge_fraction"]
        bulge_fraction = np.where(red, rng.beta(*bt["red"], size=n), rng.beta(*bt["blue"], size=n))
        # Light-weighted mixtures -> coefficients giving unit intrinsic ^{0.1}r maggies in total.
        coeffs_bulge = bulge_fraction[:, None] * bulge_light / self.template_ref_maggies
        coeffs_disk = (1 - bulge_fraction)[:, None] * disk_light / self.template_ref_maggies
        dust = pop["dust_ebv_mean"]
        ebv = rng.exponential(np.where(red, dust["red"], dust["blue"]))
        perturb = pop["perturbation"]
        perturbation = rng.normal(0.0, perturb["amplitude"], size=(n, int(perturb["n_terms"])))

        names = [f.name for f in self.config.fields]
        fractions = [f.fraction for f in self.config.fields]
        field_index = rng.choice(len(names), size=n, p=fractions)
        sizes = self._sizes(absmag, z, rng)
        cos_i = rng.uniform(size=n)
        q0 = morph["disk_thickness"]
        table = {
            "z": z, "absmag_r01": absmag, "red": red, "bulge_fraction": bulge_fraction, "ebv": ebv,
            "field": np.asarray(names)[field_index], **sizes,
            "disk_q": np.sqrt(cos_i**2 * (1 - q0**2) + q0**2),
            "bulge_q": rng.uniform(*morph["bulge_axis_ratio"], size=n),
            "position_angle": rng.uniform(0.0, np.pi, size=n),
            "offset_x": rng.uniform(-0.5, 0.5, size=n), "offset_y": rng.uniform(-0.5, 0.5, size=n),
            "seed": rng.integers(1, 2**31 - 1, size=n),
        }
        for f_i, f in enumerate(self.config.fields):
            here = field_index == f_i
            exposure = rng.normal(0.0, f.seeing_scatter, size=n)   # one draw: bands share the night
            for band, fwhm in f.seeing_fwhm.items():
                column = table.setdefault(f"seeing_{band}", np.zeros(n))
                column[here] = fwhm * 10.0 ** exposure[here]
        return Population(table, coeffs_bulge, coeffs_disk, perturbation)

    def _brightening(self, z: np.ndarray) -> np.ndarray:
        return self.evolution_q * (np.asarray(z) - 0.1)

    def _mixture(self, spec: dict, n: int, rng: np.random.Generator) -> np.ndarray:
        mean = np.asarray(spec["light_fractions"], float)
        mean = mean / mean.sum()
        weights = np.zeros((n, len(mean)))
        used = mean > 0
        weights[:, used] = rng.dirichlet(spec["concentration"] * mean[used], size=n)
        return weights

    def _sizes(self, absmag: np.ndarray, z: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Half-light radii from size-luminosity relations (kpc/h), as angles in arcsec."""
        out = {}
        for part in ("bulge", "disk"):
            rel = self.config.morphology[f"{part}_size"]
            log_r = rel["log10_r_star"] + rel["slope"] * (absmag - self.m_star) + rng.normal(0, rel["scatter"], len(z))
            out[f"{part}_hlr_kpc"] = 10.0 ** log_r
            out[f"{part}_hlr_arcsec"] = cosmology.angular_size_arcsec(10.0 ** log_r, z, self.config.omega_m)
        return out

    def normalise(self, population: Population) -> Population:
        """Scale each galaxy's coefficients so that its ^{0.1}r absolute magnitude is the drawn one."""
        bulge, disk = component_seds(population, self.templates)
        ref = shifted_band_maggies(self.templates.wave, bulge + disk, load_filter(REFERENCE_BAND), BAND_SHIFT)
        dm = cosmology.distance_modulus(population.table["z"], self.config.omega_m)
        scale = 10.0 ** (-0.4 * (population.table["absmag_r01"] + dm)) / ref
        return Population(population.table, population.coeffs_bulge * scale[:, None],
                          population.coeffs_disk * scale[:, None], population.perturbation)
