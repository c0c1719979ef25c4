"""Stage import_data: bring the selected source into data/raw (simulating the mock survey) for DVC."""

from __future__ import annotations

from galaxyprop.config import Stores, section
from galaxyprop.data.importing import import_source
from galaxyprop.data.params import DATA_SCHEMA
from galaxyprop.data.sources import source_spec
from galaxyprop.errors import exit_on_error
from galaxyprop.mock.config import MOCK_SCHEMA
from galaxyprop.provenance import file_md5
from galaxyprop.tracking import runs as tracking
from galaxyprop.workspace import RAW

from stage import stage_params


@exit_on_error
def main() -> None:
    params = stage_params(DATA_SCHEMA, MOCK_SCHEMA)
    data = section(params, "data")
    name, spec = source_spec(data)
    with tracking.stage_run(Stores.from_params(params), "import_data",
                            params={"data.source": name, "source": spec, "mock": params.get("mock")}):
        files = import_source(data, params.get("mock"), RAW)
        tracking.log_metrics({f"bytes.{f.name}": f.stat().st_size for f in files})
        tracking.set_tags({f"md5.{f.name}": file_md5(f) for f in files})
    print(f"imported source '{name}' -> " + ", ".join(str(f) for f in files))


if __name__ == "__main__":
    main()
