"""How every stage starts: its logging, and its params checked against the schemas of the sections it
reads with its threads set (`stage_params`). Apart from `common`, so that a stage needing nothing else
(import_data) does not rerun for an edit to the shared helpers."""

from __future__ import annotations

import logging

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
logging.getLogger("faiss").setLevel(logging.WARNING)


def stage_params(*schemas) -> dict:
    """params.yaml checked against the schemas of the sections this stage reads (and `stores`,
    `resources`), with the stage's OpenMP/BLAS/torch/faiss threads set from `resources.threads`."""
    from galaxyprop.config import load_params
    from galaxyprop.resources import RESOURCES_SCHEMA, limit_threads, thread_plan
    from galaxyprop.tracking.params import STORES_SCHEMA

    params = load_params(schemas=(*schemas, STORES_SCHEMA, RESOURCES_SCHEMA))
    value = (params.get("resources") or {}).get("threads", "auto")
    plan = thread_plan(value)
    limit_threads(plan)
    logging.getLogger("pipeline").info("threads: %s (resources.threads: %s)", plan, value)
    return params
