"""Stage import_data: copy the source catalogue into data/ so that DVC versions it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import common  # noqa: F401 - logging set-up

from galaxyprop import tracking
from galaxyprop.config import Stores, load_params, section
from galaxyprop.data.io import atomic_path
from galaxyprop.errors import GalaxypropError, exit_on_error
from galaxyprop.provenance import file_md5

PACKAGE_PREFIX = "kcorrect:"


def resolve_source(source: str) -> Path:
    """A path, or `kcorrect:<path>` inside the installed kcorrect package (its bundled real data)."""
    if source.startswith(PACKAGE_PREFIX):
        import kcorrect

        path = Path(os.path.dirname(kcorrect.__file__)) / source.removeprefix(PACKAGE_PREFIX)
    else:
        path = Path(source)
    if not path.is_file():
        raise GalaxypropError(f"{path}: source catalogue not found (params data.source = {source!r})")
    return path


@exit_on_error
def main() -> None:
    params = load_params()
    source, raw = resolve_source(section(params, "data.source")), Path(section(params, "data.raw"))
    with tracking.stage_run(Stores.from_params(params), "import_data", params={"data.source": str(source)}):
        with atomic_path(raw) as tmp:
            shutil.copyfile(source, tmp)
        tracking.log_metrics({"bytes": raw.stat().st_size})
        tracking.set_tags({"source_md5": file_md5(raw)})
    print(f"copied {source} -> {raw}")


if __name__ == "__main__":
    main()
