"""The mock survey's knobs (params.yaml `mock`), validated once."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from galaxyprop.errors import GalaxypropError
from galaxyprop.validation.rules import Schema, fail, got, reuse

IMAGE_BANDS = ("g", "r", "z")
CATALOG_BANDS = ("g", "r", "z", "W1")
LABEL_BANDS = ("g", "r", "z")  # ^{0.1}SDSS g, r, z: KCORR01_SDSS_*, ABSMAG01_SDSS_*
#: The mock's physical labels (`labels.observe`), beside each LABEL_BAND's KCORR01_SDSS_* and ABSMAG01_SDSS_*
PROPERTY_LABELS = ("LOGMSTAR", "ZZSUN", "SFR", "AGE")


def label_columns() -> set[str]:
    """The columns of the mock's FastSpecFit file a target may read: METADATA's Z and every SPECPHOT label."""
    return {"Z", *(f"{kind}01_SDSS_{b.upper()}" for kind in ("KCORR", "ABSMAG") for b in LABEL_BANDS),
            *PROPERTY_LABELS}
#: Mean age (Gyr) of the stars the templates formed over 1 Gyr ago, where mock.yaml `properties` omits it
OLD_POPULATION_AGE_GYR = 6.5


@dataclass(frozen=True)
class SurveyField:
    """One imaging field of the Legacy Surveys: its filters, seeing and depth."""

    name: str
    photsys: str
    fraction: float
    filters: Mapping[str, str]          # catalogue band -> kcorrect response name
    seeing_fwhm: Mapping[str, float]    # median PSF FWHM per image band, arcsec
    seeing_scatter: float               # log-normal scatter of the per-galaxy seeing (dex)
    depth: Mapping[str, float]          # 5-sigma point-source AB depth per catalogue band

    @classmethod
    def from_mapping(cls, name: str, spec: Mapping) -> SurveyField:
        try:
            result = cls(name=name, **spec)
        except TypeError as err:
            raise GalaxypropError(f"params mock.fields.{name}: {err}") from None
        for key, bands in (("filters", CATALOG_BANDS), ("depth", CATALOG_BANDS), ("seeing_fwhm", IMAGE_BANDS)):
            missing = [b for b in bands if b not in getattr(result, key)]
            if missing:
                raise GalaxypropError(f"params mock.fields.{name}.{key}: missing bands {missing}")
        return result


@dataclass(frozen=True)
class MockConfig:
    """Everything the simulator needs; see params.yaml `mock` for the meaning of each group."""

    n_galaxies: int
    seed: int
    fields: tuple[SurveyField, ...]
    population: Mapping
    morphology: Mapping
    imaging: Mapping
    spectroscopy: Mapping
    omega_m: float = 0.3
    chunk_size: int = 250
    n_jobs: int = -1
    noise: bool = True
    properties: Mapping = field(default_factory=dict)
    hdf5_compression: str | None = None

    @property
    def old_population_age_gyr(self) -> float:
        return float(self.properties.get("old_population_age_gyr", OLD_POPULATION_AGE_GYR))

    @classmethod
    def from_params(cls, mock: Mapping) -> MockConfig:
        mock = dict(mock)
        fields = tuple(SurveyField.from_mapping(n, s) for n, s in mock.pop("fields", {}).items())
        if not fields:
            raise GalaxypropError("params mock.fields: define at least one survey field")
        total = sum(f.fraction for f in fields)
        if abs(total - 1.0) > 1e-6:
            raise GalaxypropError(f"params mock.fields: the field fractions sum to {total}, not 1")
        known = set(cls.__dataclass_fields__) - {"fields"}
        unknown = set(mock) - known
        if unknown:
            raise GalaxypropError(f"params mock: unknown keys {sorted(unknown)}")
        missing = {"n_galaxies", "seed", "population", "morphology", "imaging", "spectroscopy"} - set(mock)
        if missing:
            raise GalaxypropError(f"params mock: missing keys {sorted(missing)}")
        if int(mock["n_galaxies"]) < 1:
            raise GalaxypropError("params mock.n_galaxies must be at least 1")
        properties = mock.get("properties", {})
        if not isinstance(properties, Mapping) or set(properties) - {"old_population_age_gyr"}:
            raise GalaxypropError(f"params mock.properties: expected {{old_population_age_gyr}}, got {properties!r}")
        from galaxyprop.data.astroclip.flat import COMPRESSION

        if mock.get("hdf5_compression") not in COMPRESSION:
            raise GalaxypropError(f"params mock.hdf5_compression must be one of {list(COMPRESSION)} (null: none), "
                                  f"got {mock['hdf5_compression']!r}")
        result = cls(fields=fields, **mock)
        if not 1.0 < result.old_population_age_gyr < 13.8:
            raise GalaxypropError("params mock.properties.old_population_age_gyr must lie between 1 and 13.8 Gyr, "
                                  f"got {result.old_population_age_gyr}")
        return result

    def field_named(self, name: str) -> SurveyField:
        return next(f for f in self.fields if f.name == name)


def _check_mock(mock: Mapping, params: Mapping) -> None:
    population = mock.get("population") or {}
    if population.get("z_min", 0) >= population.get("z_max", math.inf):
        fail("mock.population.z_min", f"must be below mock.population.z_max, {got(population['z_min'])}")
    reuse("mock", lambda: MockConfig.from_params(mock))
    data = params.get("data") or {}
    if data.get("source") == "mock":
        _check_target_labels(params, (data.get("sources") or {}).get("mock") or {})


def _check_target_labels(params: Mapping, source: Mapping) -> None:
    """Each target the pipeline trains reads a column the mock writes (before import_data, not at prepare)."""
    from galaxyprop.data.targets import column_key, target_columns

    try:
        columns = target_columns(params.get("targets") or {}, "mock", source,
                                 list((params.get("train") or {}).get("targets") or []))
    except GalaxypropError:
        return          # an unknown or malformed target: the targets' own schema names it
    have = label_columns()
    for column in columns.values():
        for name in column.file_columns:
            if name not in have:
                fail(column_key("mock", source, column, name),
                     f"names '{name}', which the mock survey does not write; it has {', '.join(sorted(have))}")


#: params `mock` (mock.yaml): the mock survey
MOCK_SCHEMA = Schema(
    rules={"mock.n_galaxies": "count", "mock.seed": "int", "mock.omega_m": "open01", "mock.chunk_size": "count",
           "mock.n_jobs": "int", "mock.noise": "bool", "mock.population": "map", "mock.morphology": "map",
           "mock.imaging": "map", "mock.spectroscopy": "map", "mock.fields": "map",
           "mock.population.r_limit": "number", "mock.population.z_min": "nonneg",
           "mock.population.z_max": "positive", "mock.imaging.stamp_size": "count",
           "mock.imaging.pixel_scale": "positive", "mock.imaging.moffat_beta": "positive",
           **{f"mock.spectroscopy.{k}": "nonneg" for k in ("fiber_diameter", "seeing_fwhm", "seeing_scatter",
                                                           "noise_sigma", "depth_scatter", "source_noise")},
           "mock.fields.*.fraction": "prob", "mock.fields.*.seeing_scatter": "nonneg"},
    checks={"mock": _check_mock})
