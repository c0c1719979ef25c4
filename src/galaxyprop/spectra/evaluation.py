"""How well a spectrum model does, as reports/spectra.json gives it: the latent's own floor, and per
result the latent errors (val and test, per survey field), the decoded spectra's reduced chi^2 against
the observed ones and the recovery of Dn4000 and the H-alpha equivalent width."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from galaxyprop.calibration import field_groups
from galaxyprop.data.astroclip import DESI_WAVE
from galaxyprop.evaluation.metrics.point import redshift_metrics
from galaxyprop.spectra.heads import spectrum_targets, split_targets
from galaxyprop.spectra.latent import SpectralLatent
from galaxyprop.spectra.metrics import (
    dn4000,
    latent_mse_per_component,
    latent_mse_relative,
    latent_mse_relative_unweighted,
    line_equivalent_width,
    median_reduced_chi2,
    recovery,
)

LINE = "halpha"   # stays in the DESI window to z ~ 0.48, past the default z_max


def latent_targets(latent: SpectralLatent, flux: np.ndarray, ivar: np.ndarray, z: np.ndarray) -> np.ndarray:
    """What the heads learn for each spectrum: its latent, redshift and log10 normalisation (NaN rows
    where the spectrum does not cover the normalisation window)."""
    latents, log_norm = latent.encode(flux, ivar, z)
    return spectrum_targets(latents, z, log_norm)


def usable(Y: np.ndarray) -> np.ndarray:
    return np.isfinite(Y).all(axis=1)


def latent_summary(latent: SpectralLatent, targets: Mapping[str, np.ndarray]) -> dict:
    return {"n_components": int(latent.n_latent), "explained_variance_ratio": [float(v) for v in
                                                                              latent.explained_variance_ratio_],
            "training_variance_left": float(latent.fraction_left_),
            "unusable": {split: int((~usable(Y)).sum()) for split, Y in targets.items()}}


def index_recovery(observed: np.ndarray, z: np.ndarray, model: np.ndarray, z_model: np.ndarray) -> dict:
    """Dn4000 and the H-alpha EW of the model spectra, each measured in its own rest frame (`z_model`: a
    predicted spectrum at its predicted redshift), against the same on the observed ones at their redshift."""
    return {"dn4000": recovery(dn4000(DESI_WAVE, observed, z), dn4000(DESI_WAVE, model, z_model)),
            f"ew_{LINE}": recovery(line_equivalent_width(DESI_WAVE, observed, z, LINE),
                                   line_equivalent_width(DESI_WAVE, model, z_model, LINE))}


def floor_metrics(latent: SpectralLatent, flux: np.ndarray, ivar: np.ndarray, z: np.ndarray) -> dict:
    """What the latent itself leaves on the test spectra: the best any head predicting it can do."""
    model = latent.reconstruct(flux, ivar, z)
    return {"variance_left": latent.variance_left(flux, ivar, z), "chi2_median": median_reduced_chi2(flux, ivar, model),
            **index_recovery(flux, z, model, z)}


def latent_metrics(true: np.ndarray, mean: np.ndarray, std: np.ndarray, train: np.ndarray) -> dict:
    """Latent MSE relative to the training-mean predictor (weighted by each latent's variance, and plain),
    per component, how often the truth lies within the head's 1-sigma spread, and the redshift's scatter."""
    latent_true, z_true, norm_true = split_targets(true)
    latent_pred, z_pred, norm_pred = split_targets(mean)
    latent_std = split_targets(std)[0]
    train_latents = split_targets(train)[0]
    return {"latent_mse_relative": latent_mse_relative(latent_true, latent_pred, train_latents),
            "latent_mse_relative_unweighted": latent_mse_relative_unweighted(latent_true, latent_pred, train_latents),
            "latent_mse_relative_per_component": [float(v) for v in
                                                  latent_mse_per_component(latent_true, latent_pred, train_latents)],
            "latent_coverage_68": float(np.mean(np.abs(latent_true - latent_pred) <= latent_std)),
            "z_sigma_mad": float(redshift_metrics(z_true, z_pred)["sigma_mad"]),
            "log_norm_rmse": float(np.sqrt(np.mean((norm_true - norm_pred) ** 2))), "n": int(len(true))}


def result_metrics(predictor, features: Mapping[str, np.ndarray], targets: Mapping[str, np.ndarray],
                   observed: Mapping[str, tuple[np.ndarray, np.ndarray]], z: Mapping[str, np.ndarray],
                   fields: Mapping[str, np.ndarray | None]) -> dict:
    """One head on one feature source: latent metrics on val and test (test also per field), and the
    decoded test spectra against the observed ones."""
    out = {}
    for split in ("val", "test"):
        rows = usable(targets[split])
        mean, std = predictor.predict_from_features(features[split][rows])
        out[split] = latent_metrics(targets[split][rows], mean, std, targets["train"][usable(targets["train"])])
        if split == "test":
            train = targets["train"][usable(targets["train"])]
            here = None if fields[split] is None else np.asarray(fields[split])[rows]
            out[split]["by_field"] = {field: latent_metrics(targets[split][rows][part], mean[part], std[part], train)
                                      for field, part in field_groups(here, int(rows.sum())).items()}
            latents, z_pred, log_norm = split_targets(mean)
            model = predictor.latent.decode(latents, z_pred, log_norm)
            flux, ivar = (a[rows] for a in observed[split])
            out[split]["chi2_median"] = median_reduced_chi2(flux, ivar, model)
            out[split].update(index_recovery(flux, z[split][rows], model, z_pred))
    return out


def results_figure(report: Mapping):
    """Each result's test latent MSE relative to the mean predictor (weighted and plain; 1 = the mean),
    and its decoded spectra's median reduced chi^2 beside the latent's own floor."""
    import matplotlib.pyplot as plt

    names = list(report["results"])
    test = [report["results"][n]["test"] for n in names]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 0.45 * len(names) + 2.5))
    y = np.arange(len(names))
    left.barh(y - 0.2, [t["latent_mse_relative"] for t in test], 0.4, label="variance-weighted")
    left.barh(y + 0.2, [t["latent_mse_relative_unweighted"] for t in test], 0.4, label="unweighted")
    left.axvline(1.0, color="k", lw=0.8, ls="--", label="mean predictor")
    left.set(yticks=y, yticklabels=names, xlabel="latent MSE / training variance (test)")
    left.legend(fontsize=8)
    right.barh(y, [t["chi2_median"] for t in test], 0.6, color="C2")
    right.axvline(report["floor"]["chi2_median"], color="k", lw=0.8, ls="--", label="latent reconstruction")
    right.set(yticks=y, yticklabels=[], xlabel="median reduced chi^2 of the decoded spectrum (test)")
    right.legend(fontsize=8)
    fig.tight_layout()
    return fig
