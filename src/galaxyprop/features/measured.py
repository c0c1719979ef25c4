"""Photometry and morphology measured on g,r,z cutouts with sep (Source Extractor as a library).

Per cutout the sky level and noise of each band come from sep's clipped background estimate: on a
stamp of at least two `background_box`es a spatially varying mesh, on a smaller one a constant
from the outer `sky_border` px ring alone (the galaxy fills the middle), measured first on all the
ring's pixels, then without those of detected sources. Sources are found by `sep.extract` on the
noise-weighted sum of the three bands; the one nearest the stamp centre is the galaxy (a centred
circle of `fallback_radius` px stands in when none lies within `max_offset` px). The other
sources' pixels are replaced by their mirror image through the galaxy centre (SExtractor's
MASK_TYPE CORRECT). Every band's flux is then summed in the detection's Kron ellipse (2.5 Kron
radii, at least 3.5: FLUX_AUTO, one aperture for all bands as in dual-image mode) and in circular
apertures, and `sep.flux_radius` gives the radii holding 50% and 90% of each band's Kron flux.
Fluxes become asinh magnitudes (luptitudes softened by the sky noise in the aperture, so faint or
negative fluxes stay finite) and adjacent-band colours; sizes become log10 half-light radii in
arcsec and the r-band concentration r90/r50; shape is the detection's axis ratio b/a. Only
rotation-invariant quantities are kept (no position angle). On 64 px stamps the ring sky takes
some of the wings of galaxies larger than ~2" (half-light): set `subtract_sky=False` for cutouts
already sky-subtracted whose total fluxes matter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sep
from scipy.ndimage import binary_dilation

from galaxyprop.features.images import channels_first
from galaxyprop.physics.magnitudes import NANOMAGGIE_ZEROPOINT

BANDS = ("g", "r", "z")
_POGSON = 2.5 / np.log(10.0)
_KRON_FACTOR, _KRON_MIN, _KRON_SEARCH = 2.5, 3.5, 6.0     # SExtractor's PHOT_AUTOPARAMS and its 6-isophote search
_CIRCLE_MIN = 1.75    # px: the smallest Kron aperture (radius of its equal-area circle) before a circle replaces it
_MIN_RADIUS = 0.25    # px: floor of the flux radii (noise can drive them to zero)


def luptitude(flux: np.ndarray, softening: np.ndarray, zeropoint: float = NANOMAGGIE_ZEROPOINT) -> np.ndarray:
    """Asinh magnitude (Lupton et al. 1999) of `flux` with softening `softening` (same units): the AB
    magnitude for flux >> softening, finite and smooth through zero and negative fluxes."""
    softening = np.maximum(softening, 1e-30)
    return zeropoint - _POGSON * (np.arcsinh(flux / (2.0 * softening)) + np.log(softening))


def _sky(raw: np.ndarray, mask: np.ndarray | None, box: int, border: int) -> tuple[np.ndarray, np.ndarray]:
    """Sky level and rms of every band of a (3, H, W) stamp, `mask`ed pixels left out (sep's clipped
    background): a mesh of `box` px on stamps of at least two boxes, else a constant from the outer
    `border` px ring alone."""
    height, width = raw.shape[1:]
    if min(height, width) >= 2 * box:
        skies = [sep.Background(band, mask=mask, bw=box, bh=box, fw=3, fh=3) for band in raw]
        return np.stack([sky.back() for sky in skies]), np.array([sky.globalrms for sky in skies])
    ring = np.ones((height, width), bool)
    ring[border:height - border, border:width - border] = False
    if mask is not None and (ring & ~mask).sum() >= 50:         # enough unmasked ring pixels
        ring &= ~mask
    pixels = np.ascontiguousarray(raw[:, ring])                 # one sep box over the ring's pixels, in a row
    skies = [sep.Background(row[None], bw=row.size, bh=1, fw=1, fh=1) for row in pixels]
    return np.array([sky.globalback for sky in skies])[:, None, None], np.array([sky.globalrms for sky in skies])


def _mirror_fill(band: np.ndarray, masked: np.ndarray, x: float, y: float) -> np.ndarray:
    """`band` with `masked` pixels replaced by their mirror through (x, y) (0 where that is masked or off the stamp)."""
    out = band.copy()
    rows, cols = np.nonzero(masked)
    mr, mc = np.rint(2.0 * y - rows).astype(int), np.rint(2.0 * x - cols).astype(int)
    inside = (mr >= 0) & (mr < band.shape[0]) & (mc >= 0) & (mc < band.shape[1])
    ok = np.zeros(len(rows), bool)
    ok[inside] = ~masked[mr[inside], mc[inside]]
    out[rows, cols] = 0.0
    out[rows[ok], cols[ok]] = band[mr[ok], mc[ok]]
    return out


@dataclass(frozen=True, kw_only=True)
class MeasuredFeatures:
    """Kron and aperture luptitudes, colours, half-light radii, concentration and axis ratio measured
    with sep on (N, H, W, 3) or (N, 3, H, W) g,r,z cutouts in nanomaggies per pixel."""

    pixel_scale: float = 0.262                   # arcsec per pixel
    aperture_radii: tuple[float, ...] = (3.0, 6.0, 12.0)   # px
    detect_threshold: float = 1.5                # sigma of the detection image
    min_area: int = 5                            # px above threshold for a detection
    deblend_cont: float = 0.005
    max_offset: float = 5.0                      # px: the galaxy is the detection nearest the centre within this
    fallback_radius: float = 5.0                 # px: circular aperture when nothing is detected there
    background_box: int = 64                     # px: sep background mesh, on stamps of at least two boxes
    sky_border: int = 8                          # px: width of the outer ring that gives a smaller stamp's sky
    subtract_sky: bool = True                    # False: the cutouts are sky-subtracted already (only the rms is measured)
    progress: bool = False
    input_kind = "images"
    min_size = 16                                # px: the smallest stamp measured

    @property
    def names(self) -> list[str]:
        radii = [f"ap{r:g}" for r in self.aperture_radii]
        colours = [f"{a}-{b}" for a, b in zip(BANDS[:-1], BANDS[1:])]
        return ([f"kron_mag_{b}" for b in BANDS] + [f"kron_{c}" for c in colours]
                + [f"{ap}_mag_r" for ap in radii] + [f"{ap}_{c}" for ap in radii for c in colours]
                + [f"log_r50_{b}" for b in BANDS] + ["c_r", "axis_ratio"])

    def transform(self, inputs: np.ndarray) -> np.ndarray:
        """(N, n_features) float32 features, finite for every row; a one-line error for a bad shape or pixel."""
        images = channels_first(inputs, min_size=self.min_size, what="cutouts")
        rows = range(len(images))
        if self.progress:
            from tqdm import tqdm
            rows = tqdm(rows, desc="measuring cutouts", unit="cutout")
        out = np.empty((len(images), len(self.names)), np.float32)
        stack = sep.get_extract_pixstack()
        sep.set_extract_pixstack(images.shape[2] * images.shape[3] + 1)   # sep's 300000 default costs 0.5 ms a call
        try:
            for i in rows:
                out[i] = self.measure(images[i])
        finally:
            sep.set_extract_pixstack(stack)
        return out

    def measure(self, image: np.ndarray) -> np.ndarray:
        """Features of one (3, H, W) cutout."""
        raw = np.ascontiguousarray(image, dtype=np.float32)
        bands, rms = self._subtract_sky(raw, None)
        galaxy, segmap, galaxy_id = self._detect(bands, rms)
        if segmap is not None:                                  # again, now with the sources masked
            bands, rms = self._subtract_sky(raw, binary_dilation(segmap > 0, iterations=3))
            neighbours = (segmap > 0) & (segmap != galaxy_id)
            if neighbours.any():
                neighbours = binary_dilation(neighbours, iterations=1) & (segmap != galaxy_id)
                bands = np.stack([_mirror_fill(band, neighbours, *galaxy[:2]) for band in bands])
        return self._photometry(bands, rms, *galaxy, detected=galaxy_id > 0)

    def _subtract_sky(self, raw: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Sky-subtracted (3, H, W) float32 bands (unless `subtract_sky` is off) and their sky rms."""
        level, rms = _sky(raw, mask, self.background_box, self.sky_border)
        bands = np.ascontiguousarray(raw - level if self.subtract_sky else raw, dtype=np.float32)
        floor = 1e-6 * max(float(np.abs(bands).max()), 1e-30)   # noiseless stamps: a tiny noise, not zero
        return bands, np.maximum(rms, floor)

    def _detect(self, bands: np.ndarray, rms: np.ndarray):
        """(x, y, a, b, theta) of the galaxy, the segmentation map and the galaxy's id in it (0: a centred
        circle of `fallback_radius` stands in; the map is None when nothing was detected)."""
        height, width = bands.shape[1:]
        centred = ((width - 1) / 2.0, (height - 1) / 2.0, self.fallback_radius, self.fallback_radius, 0.0)
        detection = np.ascontiguousarray((bands / rms[:, None, None]).sum(axis=0) / np.sqrt(len(bands)), np.float32)
        try:
            objects, segmap = sep.extract(detection, self.detect_threshold, err=1.0, minarea=self.min_area,
                                          deblend_cont=self.deblend_cont, segmentation_map=True)
        except Exception:                                       # sep's pixel stack overflows on pathological stamps
            return centred, None, 0
        if len(objects) == 0:
            return centred, None, 0
        distance = np.hypot(objects["x"] - centred[0], objects["y"] - centred[1])
        k = int(np.argmin(distance))
        obj = objects[k]
        if distance[k] > self.max_offset or not (obj["a"] > 0 and np.isfinite(obj["theta"])):
            return centred, segmap, 0
        ellipse = (float(obj["x"]), float(obj["y"]), float(obj["a"]), float(max(obj["b"], 1e-3 * obj["a"])),
                   float(np.clip(obj["theta"], -np.pi / 2, np.pi / 2)))
        return ellipse, segmap, k + 1

    def _photometry(self, bands, rms, x, y, a, b, theta, detected: bool) -> np.ndarray:
        """Feature vector from the sky-subtracted, neighbour-corrected bands and the galaxy's ellipse."""
        x, y, a, b, theta = (np.array([v], float) for v in (x, y, a, b, theta))   # sep takes arrays
        scale = 0.0
        if detected:
            detection = np.ascontiguousarray(bands.sum(axis=0), np.float32)
            kron, flag = sep.kron_radius(detection, x, y, a, b, theta, _KRON_SEARCH)
            if np.isfinite(kron[0]) and kron[0] > 0 and not flag[0] & sep.APER_NONPOSITIVE:
                scale = max(_KRON_FACTOR * float(kron[0]), _KRON_MIN)
        a, b = float(a[0]), float(b[0])
        if scale * np.sqrt(a * b) >= _CIRCLE_MIN:               # FLUX_AUTO: the Kron ellipse ...
            kron_flux = np.array([sep.sum_ellipse(band, x, y, a, b, theta, scale)[0][0] for band in bands])
            kron_area, rmax = np.pi * a * b * scale**2, scale * a
        else:                                                   # ... or a circle when it is tiny or undefined
            radius = self.fallback_radius if not detected or scale == 0 else _CIRCLE_MIN
            kron_flux = np.array([sep.sum_circle(band, x, y, radius)[0][0] for band in bands])
            kron_area, rmax = np.pi * radius**2, radius
        radii = np.asarray(self.aperture_radii, float)
        ap_flux = np.stack([sep.sum_circle(band, np.full_like(radii, x[0]), np.full_like(radii, y[0]), radii)[0]
                            for band in bands])                 # (3, n_radii)
        kron_mag = luptitude(kron_flux, rms * np.sqrt(kron_area))
        ap_mag = luptitude(ap_flux, rms[:, None] * np.sqrt(np.pi) * radii)
        point = x, y, np.array([rmax])
        frac = np.stack([sep.flux_radius(band, *point, [0.5, 0.9], normflux=np.array([max(flux, 1e-30)]), subpix=3)[0][0]
                         for band, flux in zip(bands, kron_flux)])          # (3, 2) px
        frac = np.clip(np.nan_to_num(frac, nan=rmax), _MIN_RADIUS, rmax)
        return np.concatenate([kron_mag, -np.diff(kron_mag), ap_mag[BANDS.index("r")], -np.diff(ap_mag, axis=0).T.ravel(),
                               np.log10(frac[:, 0] * self.pixel_scale), [frac[1, 1] / frac[1, 0], b / a if detected else 1.0]
                               ]).astype(np.float32)
