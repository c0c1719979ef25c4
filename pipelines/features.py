"""Stage features: the photometry feature matrix of every split, keyed by id."""

from __future__ import annotations

import pandas as pd
from common import FEATURES, prepared_bands, prepared_split

from galaxyprop import tracking
from galaxyprop.config import Stores, load_params, section
from galaxyprop.data import schema
from galaxyprop.data.io import write_parquet
from galaxyprop.errors import exit_on_error
from galaxyprop.features.photometry import PhotometryFeatures


@exit_on_error
def main() -> None:
    params = load_params()
    config = section(params, "features.photometry")
    encoder = PhotometryFeatures(bands=tuple(prepared_bands()["bands"]))
    with tracking.stage_run(Stores.from_params(params), "features",
                            params={"features": config, "bands": list(encoder.bands)}):
        for split in schema.SPLITS:
            frame = prepared_split(split)
            matrix = pd.DataFrame(encoder.transform(frame), columns=encoder.names)
            matrix.insert(0, schema.ID, frame[schema.ID].to_numpy())
            write_parquet(matrix, FEATURES / "photometry" / f"{split}.parquet")
        tracking.log_metrics({"n_features": len(encoder.names)})


if __name__ == "__main__":
    main()
