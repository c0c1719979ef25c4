"""Stage combine (per combined feature source, e.g. `measured+photometry`): the parts' feature matrices
of the same galaxies side by side, each part reduced to its principal components where params
`features.components` say so (fitted on the training split), with the encoder that makes them from a
user's inputs."""

from __future__ import annotations

import argparse
import json
import logging

import pandas as pd

from galaxyprop.config import section
from galaxyprop.data import schema
from galaxyprop.data.io import load_object, save_object, write_parquet
from galaxyprop.errors import exit_on_error
from galaxyprop.features.combined import CombinedFeatures, parts_of
from galaxyprop.features.params import FEATURES_SCHEMA
from galaxyprop.workspace import FEATURE_ENCODER, FEATURES, SKIPPED, feature_path

from common import feature_split, write_skipped
from stage import stage_params

log = logging.getLogger("combine")


def joined(parts: list[str], split: str) -> tuple[pd.Series, dict]:
    """The ids every part has (in the first part's order) and each part's matrix on them."""
    tables = {part: feature_split(part, split).set_index(schema.ID) for part in parts}
    ids = tables[parts[0]].index
    for table in tables.values():
        ids = ids[ids.isin(table.index)]
    return pd.Series(ids, name=schema.ID), {part: table.loc[ids].to_numpy() for part, table in tables.items()}


@exit_on_error
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", required=True, help="a combined feature source, e.g. measured+photometry")
    args = parser.parse_args()
    params = stage_params(FEATURES_SCHEMA)
    parts = parts_of(args.source)
    folder = FEATURES / args.source
    skipped = [p for p in parts if (FEATURES / p / SKIPPED).exists()]
    if skipped:
        reason = json.loads((FEATURES / skipped[0] / SKIPPED).read_text())["reason"]
        write_skipped(folder, f"its part '{skipped[0]}' was not built: {reason}")
        return
    encoders = {part: load_object(FEATURES / part / FEATURE_ENCODER, object) for part in parts}
    components = section(params, "features.components") or {}
    splits = {split: joined(parts, split) for split in schema.SPLITS}
    combined = CombinedFeatures(encoders, components).fit(splits["train"][1])
    (folder / SKIPPED).unlink(missing_ok=True)
    save_object(combined, folder / FEATURE_ENCODER)
    for split, (ids, matrices) in splits.items():
        table = pd.DataFrame(combined.combine(matrices), columns=combined.names)
        table.insert(0, schema.ID, ids.to_numpy())
        write_parquet(table, feature_path(args.source, split))
        log.info("%s, %s: %d galaxies, %d features (%s input)", args.source, split, len(table),
                 len(combined.names), combined.input_kind)


if __name__ == "__main__":
    main()
