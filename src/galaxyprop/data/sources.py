"""The pipeline's data sources (params `data.sources`): import them into data/raw, read them into the layout.

`kind: desi` sources are an AstroCLIP HDF5 + FastSpecFit FITS pair (the real files, or the mock
survey the import step simulates); `kind: catalog` sources are plain catalogues read through a
column map, with the label K(^{0.1}r) fitted by kcorrect at the spectroscopic redshift.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from galaxyprop.data import desi, schema
from galaxyprop.data.catalog import CatalogSpec, CleaningReport, read_catalog
from galaxyprop.data.io import atomic_path
from galaxyprop.errors import GalaxypropError
from galaxyprop.physics.kcorrect_fit import fit_kcorrection

IMAGES_FILE, FASTSPEC_FILE = "astroclip.h5", "fastspec.fits"
PACKAGE_PREFIX = "kcorrect:"
KINDS = ("desi", "catalog")
MOCK = "mock"


@dataclass
class SourceData:
    """A source read into the layout, plus what later stages need to know about its bands."""

    frame: pd.DataFrame
    report: CleaningReport
    bands: list[str]                                  # required bands: every row has a positive flux
    responses: dict[str, dict[str, str]]              # band -> {photsys: kcorrect response}
    label_band: str                                   # observed band K(^{0.1}r) is mapped from

    def bands_metadata(self) -> dict:
        return {"bands": self.bands, "responses": self.responses, "label_band": self.label_band}


def source_spec(data: Mapping) -> tuple[str, dict]:
    """The selected source's name and settings, checked."""
    name = data.get("source")
    sources = data.get("sources", {})
    if name not in sources:
        raise GalaxypropError(f"params data.source = {name!r} is not one of data.sources {sorted(sources)}")
    spec = dict(sources[name])
    if spec.get("kind") not in KINDS:
        raise GalaxypropError(f"params data.sources.{name}.kind must be one of {list(KINDS)}")
    return name, spec


def resolve_path(path: str) -> Path:
    """A path, or `kcorrect:<path>` inside the installed kcorrect package (its bundled real data)."""
    if path.startswith(PACKAGE_PREFIX):
        import kcorrect

        return Path(os.path.dirname(kcorrect.__file__)) / path.removeprefix(PACKAGE_PREFIX)
    return Path(path)


def _copy(source: str, target: Path) -> None:
    path = resolve_path(source)
    if not path.is_file():
        raise GalaxypropError(f"{path}: source file not found (params data.sources)")
    with atomic_path(target) as tmp:
        shutil.copyfile(path, tmp)


def import_source(data: Mapping, mock: Mapping | None, raw: Path, progress: bool = True) -> list[Path]:
    """Bring the selected source's files into `raw` (simulating the mock survey); returns them."""
    name, spec = source_spec(data)
    if raw.exists():
        shutil.rmtree(raw)
    raw.mkdir(parents=True)
    if spec["kind"] == "catalog":
        target = raw / f"catalog{''.join(resolve_path(spec['path']).suffixes) or '.fits'}"
        _copy(spec["path"], target)
        return [target]
    images, catalog = raw / IMAGES_FILE, raw / FASTSPEC_FILE
    if name == MOCK:
        from galaxyprop.data.mock.config import MockConfig
        from galaxyprop.data.mock.survey import simulate_survey

        if mock is None:
            raise GalaxypropError("params.yaml: data.source is 'mock' but there is no 'mock' section")
        simulate_survey(MockConfig.from_params(mock), images, catalog, progress)
    else:
        for key, target in (("images", images), ("catalog", catalog)):
            if key not in spec:
                raise GalaxypropError(f"params data.sources.{name}.{key}: path missing")
            _copy(spec[key], target)
    return [images, catalog]


def load_source(data: Mapping, raw: Path) -> SourceData:
    """Read the imported source from `raw` into the layout, dropping and counting unusable rows."""
    name, spec = source_spec(data)
    z_range = {"z_min": float(data.get("z_min", 0.0)),
               "z_max": np.inf if data.get("z_max") is None else float(data["z_max"])}
    subset = {"max_rows": data.get("max_rows"), "seed": data.get("seed", 0)}
    if spec["kind"] == "desi":
        bands = list(spec.get("required_bands", desi.BANDS))
        frame, report = desi.read_desi(raw / IMAGES_FILE, raw / FASTSPEC_FILE, bands, **z_range, **subset)
        return SourceData(frame, report, bands, {b: desi.band_responses(b) for b in desi.BANDS}, "r")
    catalog = CatalogSpec.from_params({**spec, **z_range})
    files = sorted(raw.glob("catalog*"))
    if not files:
        raise GalaxypropError(f"{raw}: no imported catalogue; run the import_data stage")
    frame, report = read_catalog(files[0], catalog, **subset)
    label = spec.get("label")
    if label is None:
        raise GalaxypropError(f"params data.sources.{name}.label: how to compute K(^{{0.1}}r) is missing")
    frame["kcorr_r01"] = reference_kcorrection(frame, catalog, label)
    failed = ~np.isfinite(frame["kcorr_r01"].to_numpy())
    if failed.any():
        report.dropped["kcorrect reference fit failed"] += int(failed.sum())
        report.n_kept -= int(failed.sum())
        frame = frame[~failed].reset_index(drop=True)
    responses = {b.name: {"*": b.response} for b in catalog.bands if b.response}
    label_band = next((b for b, r in responses.items() if r["*"] == label["response_map"]), None)
    if label_band is None or any(b not in responses for b in catalog.required_bands):
        raise GalaxypropError(f"params data.sources.{name}: every required band and the label's "
                              "response_map need a 'response' in bands")
    return SourceData(frame, report, list(catalog.required_bands), responses, label_band)


def reference_kcorrection(frame: pd.DataFrame, spec: CatalogSpec, label: Mapping) -> np.ndarray:
    """K(^{0.1}r) from kcorrect fitted on every valid band with the spectroscopic redshift."""
    bands = label["bands"]
    responses = tuple(spec.band(b).response for b in bands)
    if None in responses:
        raise GalaxypropError("params label.bands: every band needs a 'response' in bands")
    flux = frame[[schema.flux_column(b) for b in bands]].to_numpy()
    ivar = frame[[schema.ivar_column(b) for b in bands]].to_numpy()
    result = fit_kcorrection(flux, ivar, frame[schema.REDSHIFT].to_numpy(), responses,
                             label["response_out"], label["response_map"], label["band_shift"])
    return result.kcorrection
