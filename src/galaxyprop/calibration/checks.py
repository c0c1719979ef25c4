"""How calibrated densities are: PIT and coverage summaries overall and per survey field, the noise
levels a finite sample allows, and the calibration rule that selection and promotion apply."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy.special import ndtr

from galaxyprop.evaluation.densities import Grid, probit_pit
from galaxyprop.evaluation.metrics.density import crps, pit_metrics

OVERALL = "all"
NOMINAL = {"coverage_68": float(ndtr(1) - ndtr(-1)), "coverage_95": float(ndtr(2) - ndtr(-2))}
KS_95 = 1.358        # the KS statistic of n uniform values exceeds 1.358 / sqrt(n) with 5 % probability


def ks_noise(n: int) -> float:
    """The PIT KS statistic that perfectly calibrated densities of `n` galaxies reach 5 % of the time."""
    return KS_95 / np.sqrt(max(n, 1))


def field_groups(fields: np.ndarray | None, n: int) -> dict[str, np.ndarray]:
    """Row masks: `all`, and each field where there is more than one."""
    groups = {OVERALL: np.ones(n, bool)}
    if fields is not None and len(set(fields)) > 1:
        fields = np.asarray(fields, dtype=object)
        groups.update({str(f): fields == f for f in sorted(set(fields), key=str)})
    return groups


def calibration_summary(pdf: np.ndarray, grid: Grid, y: np.ndarray, fields: np.ndarray | None = None,
                        intervals: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None) -> dict[str, dict]:
    """PIT KS, the 68 % and 95 % coverage, CRPS and the PIT KS noise level, overall and per field.
    The coverages are the PIT's (central intervals of the density) unless `intervals` gives the
    served bounds for `coverage_68` / `coverage_95` ((low, high) per galaxy)."""
    y = np.asarray(y, float)
    pit = ndtr(probit_pit(pdf, grid, y))
    scores = crps(pdf, grid, y)
    inside = {k: (y >= low) & (y <= high) for k, (low, high) in (intervals or {}).items()}
    out = {}
    for name, rows in field_groups(fields, len(y)).items():
        metrics = pit_metrics(pit[rows])
        out[name] = {"n": int(rows.sum()), "pit_ks": metrics["pit_ks"], "ks_noise": float(ks_noise(int(rows.sum()))),
                     **{k: float(inside[k][rows].mean()) if k in inside else metrics[k] for k in NOMINAL},
                     "crps": float(np.mean(scores[rows]))}
    return out


def off_by_more_than_noise(metrics: Mapping[str, float]) -> bool:
    """Whether a sample's PIT is off uniform by more than its size explains: KS beyond its 95 % level,
    or a coverage beyond two binomial standard errors of nominal."""
    n = metrics["n"]
    if metrics["pit_ks"] > ks_noise(n):
        return True
    return any(abs(metrics[k] - p) > 2 * np.sqrt(p * (1 - p) / n) for k, p in NOMINAL.items())


def calibration_rule_problems(metrics: Mapping[str, float], coverage_tolerance: float = 0.05,
                              ks_noise_factor: float = 2.0, noise_sigmas: float = 2.5, where: str = "") -> list[str]:
    """Why densities fail the calibration rule (empty: they pass): the 68 % interval's coverage
    within `coverage_tolerance` of 0.683 (widened to `noise_sigmas` binomial standard errors for a
    sample too small to measure it that well) and the PIT KS below `ks_noise_factor` x 1.358 / sqrt(n)."""
    found = []
    n, coverage, ks = int(metrics["n"]), metrics["coverage_68"], metrics["pit_ks"]
    place = f" on {where}" if where else ""
    p = NOMINAL["coverage_68"]
    tolerance = max(coverage_tolerance, noise_sigmas * np.sqrt(p * (1 - p) / max(n, 1)))
    if not abs(coverage - p) <= tolerance:
        found.append(f"68 % interval covers {coverage:.3f}{place}, outside {p:.3f} +- {tolerance:.3g}")
    limit = ks_noise_factor * ks_noise(n)
    if not ks < limit:
        found.append(f"PIT KS {ks:.4f}{place} is not below {ks_noise_factor:g} x the noise level "
                     f"1.358/sqrt({n}) = {limit:.4f}")
    return found
