"""Stage check_params: validate params.yaml as a whole before any other stage runs.

On success it writes reports/params_check.json, whose content depends only on which of the validated
sections exist, not on their values (nor on sections it does not know), so that the stages depending
on it rerun only for their own params. On a bad value it exits 2 with one line naming the key, and
`dvc repro` stops before any stage's outputs are removed (this stage's own output is `persist` in
dvc.yaml: DVC leaves it in place, and its content does not depend on the values anyway).
"""

from __future__ import annotations

from galaxyprop.config import load_params
from galaxyprop.data.io import write_json
from galaxyprop.errors import exit_on_error
from galaxyprop.validation.project import SCHEMAS, VALIDATED_SECTIONS
from galaxyprop.workspace import PARAMS_CHECK

OUT = PARAMS_CHECK


@exit_on_error
def main() -> None:
    params = load_params(schemas=SCHEMAS)   # every section's schema
    write_json({"valid": True, "sections": [s for s in VALIDATED_SECTIONS if s in params]}, OUT)


if __name__ == "__main__":
    main()
