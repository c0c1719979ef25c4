"""The spectrum model family (after Wu & Peek 2020): predict a galaxy's DESI spectrum from its image by
predicting a compact latent of the spectrum and decoding it.

`latent` (SpectralLatent: rest-frame resampling, normalisation, weighted PCA; MeanTemplate, the
fixed-template baseline), `heads` (knn and mlp multi-output heads to latents + z + log_norm),
`model` (SpectrumPredictor: features -> head -> decoded spectra with per-pixel spreads), `metrics`
(latent errors, reduced chi^2, Dn4000, line equivalent widths, recovery), `gallery` (figures).
Heads import torch; `latent` and `metrics` need only numpy; the package imports none of them (the
params checks read `names` alone), so import the modules themselves.
"""
