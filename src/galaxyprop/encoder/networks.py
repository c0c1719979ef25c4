"""The two compact encoders (written here: there is no CPU torchvision), each ending in an
L2-normalised embedding of the same dimension."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

_CONV = {1: nn.Conv1d, 2: nn.Conv2d}


def norm(channels: int) -> nn.Module:
    """Group norm: batch-independent, so evaluation matches training (batch norm's running
    statistics made the contrastive validation loss jump from epoch to epoch)."""
    return nn.GroupNorm(min(8, channels), channels)


class ResidualBlock(nn.Module):
    """Two convolutions with group norm and a (projected when needed) skip connection, in 1-D or 2-D."""

    def __init__(self, dims: int, c_in: int, c_out: int, stride: int, kernel: int = 3):
        super().__init__()
        conv = _CONV[dims]
        self.body = nn.Sequential(
            conv(c_in, c_out, kernel, stride, padding=kernel // 2, bias=False), norm(c_out), nn.ReLU(inplace=True),
            conv(c_out, c_out, kernel, 1, padding=kernel // 2, bias=False), norm(c_out))
        self.skip = (nn.Identity() if stride == 1 and c_in == c_out
                     else nn.Sequential(conv(c_in, c_out, 1, stride, bias=False), norm(c_out)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.skip(x))


def projection(c_in: int, embedding_dim: int) -> nn.Module:
    """The CLIP projection head: a small MLP into the shared space."""
    hidden = max(c_in, embedding_dim)
    return nn.Sequential(nn.Linear(c_in, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, embedding_dim))


class ApertureFluxes(nn.Module):
    """Per-band fluxes in concentric circular apertures about the stamp centre, asinh-scaled.

    Global average pooling of stretched pixels cannot form a total flux, so a CNN alone is a poor
    photometer; these sums (on the linear flux, recovered from the stretch) give the encoder the
    colours and light profile directly. Like the pooling, they are invariant under D4.
    """

    def __init__(self, radii: Sequence[float] = (2.0, 4.0, 8.0, 16.0)):
        super().__init__()
        self.radii = tuple(float(r) for r in radii)
        self._masks: dict[tuple, torch.Tensor] = {}

    @property
    def n_features(self) -> int:
        return 3 * len(self.radii)

    def masks(self, height: int, width: int, device: torch.device) -> torch.Tensor:
        key = (height, width, str(device))
        if key not in self._masks:
            y, x = torch.meshgrid(torch.arange(height) - (height - 1) / 2, torch.arange(width) - (width - 1) / 2,
                                  indexing="ij")
            radius = torch.sqrt(x ** 2 + y ** 2)
            # pixel-fraction edges (linear over one pixel) keep the sums smooth in the radius
            self._masks[key] = torch.stack([(r + 0.5 - radius).clamp(0, 1) for r in self.radii]).to(device)
        return self._masks[key]

    def forward(self, stretched: torch.Tensor) -> torch.Tensor:
        flux = torch.sinh(stretched)                       # linear flux in units of the softening
        masks = self.masks(*stretched.shape[-2:], stretched.device)
        sums = torch.einsum("nchw,rhw->ncr", flux, masks)
        return torch.asinh(sums).flatten(1) / 5.0


class ImageTrunk(nn.Module):
    """Residual CNN on stretched (N, 3, H, W) cutouts: a strided stem, one stride-2 block per width and
    global average pooling (position- and orientation-free), joined with aperture fluxes when radii
    are given. Its `n_features` pooled features feed a projection (encoder) or a regressor (CNN head)."""

    def __init__(self, widths: Sequence[int] = (32, 64, 128), in_channels: int = 3,
                 aperture_radii: Sequence[float] = ()):
        super().__init__()
        widths = list(widths)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, 2, padding=1, bias=False),
                                  norm(widths[0]), nn.ReLU(inplace=True))
        pairs = zip(widths[:1] + widths[:-1], widths, strict=True)
        self.blocks = nn.Sequential(*[ResidualBlock(2, c_in, c_out, stride=1 if i == 0 else 2)
                                      for i, (c_in, c_out) in enumerate(pairs)])
        self.apertures = ApertureFluxes(aperture_radii)
        self.n_features = widths[-1] + self.apertures.n_features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pooled = self.blocks(self.stem(images)).mean(dim=(-2, -1))
        if self.apertures.radii:
            pooled = torch.cat([pooled, self.apertures(images)], dim=1)
        return pooled


class ImageEncoder(ImageTrunk):
    """The image trunk, then the projection and L2 normalisation into the shared space."""

    def __init__(self, widths: Sequence[int] = (32, 64, 128), embedding_dim: int = 128, in_channels: int = 3,
                 aperture_radii: Sequence[float] = ()):
        super().__init__(widths, in_channels, aperture_radii)
        self.project = projection(self.n_features, embedding_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.project(super().forward(images)), dim=-1)


class SpectrumEncoder(nn.Module):
    """1-D residual CNN on normalised (N, n_pixel) spectra. Redshift lives in where the lines are,
    so the last feature map is pooled to a few wavelength cells and flattened, not averaged away."""

    def __init__(self, widths: Sequence[int] = (16, 32, 64, 64), embedding_dim: int = 128,
                 stem_stride: int = 4, n_cells: int = 16, kernel: int = 5):
        super().__init__()
        widths = list(widths)
        self.stem = nn.Sequential(nn.Conv1d(1, widths[0], 2 * stem_stride + 1, stem_stride, padding=stem_stride,
                                            bias=False), norm(widths[0]), nn.ReLU(inplace=True))
        self.blocks = nn.Sequential(*[ResidualBlock(1, c_in, c_out, stride=2, kernel=kernel)
                                      for c_in, c_out in zip(widths[:1] + widths[:-1], widths, strict=True)])
        self.pool = nn.AdaptiveAvgPool1d(n_cells)
        self.project = projection(widths[-1] * n_cells, embedding_dim)

    def forward(self, spectra: torch.Tensor) -> torch.Tensor:
        cells = self.pool(self.blocks(self.stem(spectra.unsqueeze(1))))
        return F.normalize(self.project(cells.flatten(1)), dim=-1)
