"""Write a new batch of the mock survey (AstroCLIP HDF5 + FastSpecFit FITS) for `galaxyprop drift`:
one field, drawn like the training data or with a known shift (worse seeing, shallower depth).

    python tools/mock_batch.py --out batches/like_south --field south --n 1000 --seed 7
    python tools/mock_batch.py --out batches/bad_seeing --field south --seeing-scale 1.4
    galaxyprop drift --current batches/bad_seeing/astroclip.h5 \
        --current-catalog batches/bad_seeing/fastspec.fits

Galaxies are drawn only within the pipeline's redshift range (params data.z_min/z_max), as the
prepare stage keeps them, so an unshifted batch is a sample of the training population.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

from galaxyprop.config import load_params, section
from galaxyprop.errors import GalaxypropError, exit_on_error
from galaxyprop.mock.config import MockConfig
from galaxyprop.mock.survey import simulate_survey


def batch_params(params: dict, field: str, n: int, seed: int, seeing_scale: float, depth_offset: float) -> dict:
    mock = copy.deepcopy(section(params, "mock"))
    fields = mock["fields"]
    if field not in fields:
        raise GalaxypropError(f"params mock.fields has no field '{field}'; it has {sorted(fields)}")
    spec = fields[field]
    spec["fraction"] = 1.0
    spec["seeing_fwhm"] = {b: v * seeing_scale for b, v in spec["seeing_fwhm"].items()}
    spec["depth"] = {b: v + depth_offset for b, v in spec["depth"].items()}
    mock["fields"] = {field: spec}
    mock.update(n_galaxies=n, seed=seed)
    data = section(params, "data")
    mock["population"]["z_min"] = max(float(mock["population"]["z_min"]), float(data.get("z_min") or 0.0))
    if data.get("z_max") is not None:
        mock["population"]["z_max"] = min(float(mock["population"]["z_max"]), float(data["z_max"]))
    return mock


@exit_on_error
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for astroclip.h5 and fastspec.fits")
    parser.add_argument("--field", default="south", help="survey field of params mock.fields")
    parser.add_argument("--n", type=int, default=1000, help="galaxies in the batch")
    parser.add_argument("--seed", type=int, default=7, help="a seed other than the survey's gives new galaxies")
    parser.add_argument("--seeing-scale", type=float, default=1.0, help="multiply the field's seeing FWHM")
    parser.add_argument("--depth-offset", type=float, default=0.0, help="add to the depths (mag; < 0: shallower)")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    config = MockConfig.from_params(batch_params(load_params(args.params), args.field, args.n, args.seed,
                                                 args.seeing_scale, args.depth_offset))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    simulate_survey(config, out / "astroclip.h5", out / "fastspec.fits")
    print(f"wrote {args.n} galaxies of field '{args.field}' to {out}/astroclip.h5 and {out}/fastspec.fits")


if __name__ == "__main__":
    main()
