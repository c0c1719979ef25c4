"""Image cutouts as the encoder sees them: checked, asinh-stretched, cropped and augmented.

Cutouts are g,r,z flux in nanomaggies per pixel. Files hold them (N, H, W, 3) (the AstroCLIP
layout); the networks take (N, 3, H, W). The stretch is asinh(flux / softening) per band, as the
Legacy Surveys viewer and AstroCLIP use: linear in the sky noise, logarithmic in bright cores.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from galaxyprop.errors import GalaxypropError

if TYPE_CHECKING:      # torch is imported in the functions that use it: a feature-only stage never loads it
    import torch

N_BANDS = 3


def channels_first(images: np.ndarray, min_size: int = 1, what: str = "images",
                   row_ids: np.ndarray | None = None) -> np.ndarray:
    """(N, 3, H, W) float32 from (N, H, W, 3) or (N, 3, H, W); a clear error for a bad shape or pixel
    (naming the row as `row_ids` numbers them, e.g. rows of a file)."""
    images = np.asarray(images)
    if images.ndim != 4 or N_BANDS not in (images.shape[1], images.shape[-1]):
        raise GalaxypropError(f"{what} must have shape (N, H, W, 3) or (N, 3, H, W) with g,r,z bands, "
                              f"got {images.shape}")
    if not np.issubdtype(images.dtype, np.number):
        raise GalaxypropError(f"{what} must be numeric, got dtype {images.dtype}")
    if images.shape[1] != N_BANDS:
        images = np.moveaxis(images, -1, 1)
    if min(images.shape[2:]) < min_size:
        raise GalaxypropError(f"{what} are {images.shape[2]}x{images.shape[3]} pixels; the encoder needs at "
                              f"least {min_size}x{min_size}")
    bad = ~np.isfinite(images).all(axis=(1, 2, 3))
    if bad.any():
        row = int(np.argmax(bad)) if row_ids is None else int(row_ids[np.argmax(bad)])
        raise GalaxypropError(f"{what} row {row} has NaN or infinite pixels ({int(bad.sum())} such rows)")
    return np.ascontiguousarray(images, dtype=np.float32)


def background_noise(images: np.ndarray, border: int = 4) -> np.ndarray:
    """Per-band sky noise (nanomaggies/pixel): 1.4826 x MAD of the border pixels, median over images."""
    images = channels_first(images)
    mask = np.ones(images.shape[2:], bool)
    mask[border:-border, border:-border] = False
    edge = images[:, :, mask]                                     # (N, 3, n_border)
    mad = np.median(np.abs(edge - np.median(edge, axis=2, keepdims=True)), axis=2)
    noise = 1.4826 * np.median(mad, axis=0)
    if not (noise > 0).all():
        raise GalaxypropError(f"cannot estimate the sky noise of the images (got {noise.tolist()}); "
                              "set encoder.image.softening explicitly")
    return noise.astype(np.float32)


def asinh_stretch(images: torch.Tensor, softening: torch.Tensor) -> torch.Tensor:
    """asinh(flux / softening_band) for a (N, 3, H, W) batch."""
    import torch

    return torch.asinh(images / softening.view(1, -1, 1, 1))


def center_crop(images: torch.Tensor, size: int, dx: int = 0, dy: int = 0) -> torch.Tensor:
    """The size x size window whose centre is the stamp centre moved by (dx, dy) pixels."""
    height, width = images.shape[-2:]
    top, left = (height - size) // 2 + dy, (width - size) // 2 + dx
    if top < 0 or left < 0 or top + size > height or left + size > width:
        raise GalaxypropError(f"a {size}px crop shifted by ({dx}, {dy}) does not fit a {height}x{width} stamp")
    return images[..., top:top + size, left:left + size]


def dihedral(images: torch.Tensor, element: int) -> torch.Tensor:
    """One of the 8 elements of D4 on the last two axes: `element % 4` quarter turns, then a flip if >= 4."""
    import torch

    out = torch.rot90(images, element % 4, dims=(-2, -1))
    return torch.flip(out, dims=(-1,)) if element >= 4 else out


def dihedral_inverse(element: int) -> int:
    """The element that undoes `element` (flips are their own inverse)."""
    return element if element >= 4 else (4 - element) % 4


def augment(images: torch.Tensor, crop: int, max_shift: int, generator: torch.Generator | None = None,
            part: tuple[int, int] = (0, 1)) -> torch.Tensor:
    """A random D4 element and a random integer shift of at most `max_shift` px per image, cropped to `crop`.
    `part` (rank, world size): `images` is that slice of a global batch world size times as long, and gets
    that slice of the global batch's draws (the same draws as in one process, with the same generator)."""
    import torch

    n = len(images)
    rank, world = part
    elements = torch.randint(0, 8, (n * world,), generator=generator)[rank * n:(rank + 1) * n]
    shifts = torch.randint(-max_shift, max_shift + 1, (n * world, 2), generator=generator)[rank * n:(rank + 1) * n]
    out = torch.empty(images.shape[:2] + (crop, crop), dtype=images.dtype, device=images.device)
    for i in range(n):
        shifted = center_crop(images[i], crop, int(shifts[i, 0]), int(shifts[i, 1]))
        out[i] = dihedral(shifted, int(elements[i]))
    return out


def prepare_cutouts(images: torch.Tensor, softening: torch.Tensor, crop: int, max_shift: int = 0,
                    train: bool = False, generator: torch.Generator | None = None,
                    part: tuple[int, int] = (0, 1)) -> torch.Tensor:
    """What the image networks see: a centred crop (randomly shifted and D4-transformed when
    training: `augment`), asinh-stretched per band."""
    images = augment(images, crop, max_shift, generator, part) if train else center_crop(images, crop)
    return asinh_stretch(images, softening.to(images.device))


class Cutouts:
    """The feature encoder of heads that take the cutouts themselves (the supervised CNN): checked
    (N, 3, H, W) float32 g,r,z images in nanomaggies, unchanged."""

    input_kind = "images"
    names = ["g", "r", "z"]

    def __init__(self, min_size: int = 1):
        self.min_size = int(min_size)

    def transform(self, inputs: np.ndarray) -> np.ndarray:
        return channels_first(inputs, min_size=self.min_size)
