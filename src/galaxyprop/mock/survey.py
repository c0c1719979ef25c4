"""Simulate the mock survey and write it in the real layouts (AstroCLIP HDF5 + FastSpecFit FITS).

Deterministic for a given seed: the population is drawn from one generator in the main process (the
workers only normalise and observe its blocks), and every galaxy carries its own noise seed, so the
chunking and the number of worker processes do not change a single pixel.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from galaxyprop.data.astroclip import astroclip_writer
from galaxyprop.data.fastspecfit import write_fastspec
from galaxyprop.mock import imaging, spectroscopy
from galaxyprop.mock.config import CATALOG_BANDS, MockConfig
from galaxyprop.mock.labels import observe
from galaxyprop.mock.population import Population, PopulationSampler, component_seds
from galaxyprop.physics.sed import load_templates

log = logging.getLogger(__name__)
TARGETID_BASE = 39627000000000000   # the magnitude of real DESI TARGETIDs
DRAW_BLOCK = 2000                   # candidates per block when filling the sample


@dataclass
class MockSurvey:
    """The selected galaxies: their truth, noiseless photometry and labels."""

    population: Population
    photometry: dict[str, np.ndarray]
    targetid: np.ndarray


def _observed_block(sampler: PopulationSampler, candidates: Population, config: MockConfig, templates):
    """One block of candidates normalised to their drawn magnitudes, and their noiseless photometry."""
    candidates = sampler.normalise(candidates)
    return candidates, observe(candidates, config, templates)


def draw_survey(config: MockConfig, progress: bool = True) -> MockSurvey:
    """Draw candidates block by block until `n_galaxies` pass the r < r_limit cut.

    The blocks are drawn from the one generator in order (cheap) and normalised and observed (~1 s per
    block) `config.n_jobs` at a time in worker processes; the generator's state after the last block
    used is restored, so the worker count changes no galaxy and no later draw."""
    from joblib import Parallel, delayed, effective_n_jobs

    templates = load_templates(config.population.get("templates", "kcorrect-default-v4"))
    sampler = PopulationSampler(config, templates)
    rng = np.random.default_rng(config.seed)
    r_limit = float(config.population["r_limit"])
    width = max(1, effective_n_jobs(config.n_jobs))
    kept, photometry, n_kept, n_drawn = [], [], 0, 0
    with tqdm(total=config.n_galaxies, desc="mock population", unit="gal", disable=not progress) as bar, \
            Parallel(n_jobs=width) as parallel:
        while n_kept < config.n_galaxies:
            blocks, states = [], []
            for _ in range(width):
                blocks.append(sampler.candidates(DRAW_BLOCK, rng))
                states.append(rng.bit_generator.state)
            observed_blocks = parallel(delayed(_observed_block)(sampler, block, config, templates)
                                       for block in blocks) if width > 1 else \
                [_observed_block(sampler, block, config, templates) for block in blocks]
            for (candidates, observed), state in zip(observed_blocks, states, strict=True):
                passing = np.flatnonzero(22.5 - 2.5 * np.log10(observed["flux_r"]) < r_limit)
                passing = passing[: config.n_galaxies - n_kept]
                kept.append(candidates.take(passing))
                photometry.append({k: v[passing] for k, v in observed.items()})
                n_kept += len(passing)
                n_drawn += DRAW_BLOCK
                bar.update(len(passing))
                if n_kept >= config.n_galaxies:
                    rng.bit_generator.state = state     # as if the blocks after this one were never drawn
                    break
    log.info("kept %d of %d candidates with r < %.2f", n_kept, n_drawn, r_limit)
    population = Population.concatenate(kept)
    fiber = config.spectroscopy
    population.table["fiber_seeing"] = fiber["seeing_fwhm"] * 10.0 ** rng.normal(
        0.0, fiber["seeing_scatter"], len(population))
    population.table["exposure_noise"] = 10.0 ** rng.normal(0.0, fiber["depth_scatter"], len(population))
    targetid = TARGETID_BASE + np.sort(rng.choice(10**12, size=len(population), replace=False))
    merged = {k: np.concatenate([p[k] for p in photometry]) for k in photometry[0]}
    return MockSurvey(population, merged, targetid)


def catalog_photometry(survey: MockSurvey, config: MockConfig) -> dict[str, np.ndarray]:
    """Measured fluxes and inverse variances (nanomaggies), with errors that follow the image depth."""
    table, truth = survey.population.table, survey.photometry
    rng = np.random.default_rng([config.seed, 1])
    pixel = float(config.imaging["pixel_scale"])
    out = {}
    for band in CATALOG_BANDS:
        sigma = np.zeros(len(survey.population))
        seeing_band = band if band in imaging.IMAGE_BANDS else "r"
        bulge, disk = truth[f"flux_bulge_{band}"], truth[f"flux_disk_{band}"]
        size = (bulge * table["bulge_hlr_arcsec"] + disk * table["disk_hlr_arcsec"]) / np.maximum(bulge + disk, 1e-30)
        for f in config.fields:
            here = table["field"] == f.name
            sigma[here] = imaging.flux_sigma(f, band, table[f"seeing_{seeing_band}"][here], size[here], pixel)
        noise = rng.normal(0.0, 1.0, len(sigma)) * sigma if config.noise else 0.0
        out[f"FLUX_{band.upper()}"] = (truth[f"flux_{band}"] + noise).astype(np.float32)
        out[f"FLUX_IVAR_{band.upper()}"] = (1.0 / sigma**2).astype(np.float32)
        out[f"MW_TRANSMISSION_{band.upper()}"] = np.ones(len(sigma), np.float32)   # no Galactic dust in the mock
    return out


def render_block(config: MockConfig, population: Population, photometry: dict[str, np.ndarray]):
    """Images, spectra and spectral ivars of a block of galaxies (runs in a worker process)."""
    templates = load_templates(config.population.get("templates", "kcorrect-default-v4"))
    img, spec = config.imaging, config.spectroscopy
    stamp, pixel, beta = int(img["stamp_size"]), float(img["pixel_scale"]), float(img["moffat_beta"])
    fields = {f.name: f for f in config.fields}
    bulge_sed, disk_sed = component_seds(population, templates)
    table = population.table
    fractions = {part: spectroscopy.fiber_fraction(part, table[f"{part}_hlr_arcsec"], table["fiber_seeing"],
                                                   spec["fiber_diameter"], beta) for part in ("bulge", "disk")}
    shape = spectroscopy.noise_shape()
    n = len(population)
    images = np.empty((n, stamp, stamp, 3), np.float32)
    spectra = np.empty((n, spectroscopy.DESI_WAVE.size), np.float32)
    ivar = np.empty_like(spectra)
    for i in range(n):
        galaxy = {k: v[i] for k, v in table.items()}
        fluxes = {k: v[i] for k, v in photometry.items()}
        images[i] = imaging.draw_cutout(galaxy, fluxes, fields[galaxy["field"]], stamp, pixel, beta,
                                        img["neighbours"], config.noise)
        rest = fractions["bulge"][i] * bulge_sed[i] + fractions["disk"][i] * disk_sed[i]
        flux = spectroscopy.observed_spectrum(templates.wave, rest, galaxy["z"])
        if config.noise:
            rng = np.random.default_rng([int(galaxy["seed"]), 2])
            spectra[i], ivar[i] = spectroscopy.add_noise(flux, spec["noise_sigma"] * galaxy["exposure_noise"],
                                                         spec["source_noise"], rng, shape)
        else:
            spectra[i], ivar[i] = flux, 1.0 / (spec["noise_sigma"] * shape) ** 2
    return images, spectra, ivar


def fastspec_columns(survey: MockSurvey, config: MockConfig) -> tuple[dict, dict, dict]:
    """METADATA, SPECPHOT and MOCKTRUTH columns of the catalogue."""
    table = survey.population.table
    photsys = {f.name: f.photsys for f in config.fields}
    metadata = {"TARGETID": survey.targetid, "SURVEY": np.full(len(table["z"]), "main"),
                "PROGRAM": np.full(len(table["z"]), "bright"),
                "PHOTSYS": np.array([photsys[f] for f in table["field"]]), "Z": table["z"],
                **catalog_photometry(survey, config)}
    labels = {k: v.astype(np.float32) for k, v in survey.photometry.items() if k.isupper()}
    truth_keys = ("absmag_r01", "red", "bulge_fraction", "ebv", "bulge_hlr_kpc", "disk_hlr_kpc",
                  "bulge_hlr_arcsec", "disk_hlr_arcsec", "bulge_q", "disk_q", "position_angle",
                  "seeing_g", "seeing_r", "seeing_z", "fiber_seeing")
    truth = {"TARGETID": survey.targetid, **{k.upper(): table[k] for k in truth_keys},
             **{f"FLUX_{b.upper()}_TRUE": survey.photometry[f"flux_{b}"] for b in CATALOG_BANDS}}
    return metadata, labels, truth


def simulate_survey(config: MockConfig, images_path: str | os.PathLike, catalog_path: str | os.PathLike,
                    progress: bool = True) -> MockSurvey:
    """Draw the survey and write both files; each appears only once it is complete."""
    from joblib import Parallel, delayed

    survey = draw_survey(config, progress)
    metadata, labels, truth = fastspec_columns(survey, config)
    write_fastspec(catalog_path, metadata, labels, layout="specphot", extra_hdus={"MOCKTRUTH": truth})
    n, chunk = len(survey.population), int(config.chunk_size)
    starts = range(0, n, chunk)
    jobs = (delayed(render_block)(config, survey.population.take(slice(s, s + chunk)),
                                  {k: v[s:s + chunk] for k, v in survey.photometry.items()}) for s in starts)
    with astroclip_writer(images_path, n, int(config.imaging["stamp_size"]), config.hdf5_compression) as writer, \
            tqdm(total=n, desc="mock images+spectra", unit="gal", disable=not progress) as bar:
        results = Parallel(n_jobs=config.n_jobs, return_as="generator")(jobs)
        for start, (images, spectra, ivar) in zip(starts, results, strict=True):
            stop = start + len(images)
            writer.write(start, images, spectra, ivar, survey.population.table["z"][start:stop],
                         survey.targetid[start:stop])
            bar.update(len(images))
    return survey
