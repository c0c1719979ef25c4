"""MLflow tracking: one run per pipeline stage, nested runs per tuning trial, FAILED on error."""

from __future__ import annotations

import logging
import os
import re
import socket
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import mlflow
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from galaxyprop.config import Stores
from galaxyprop.errors import GalaxypropError
from galaxyprop.provenance import git_commit

_MAX_PARAM_LENGTH = 6000
HOST_TAG = "galaxyprop.host"
PID_TAG = "galaxyprop.pid"
PROCESS_START_TAG = "galaxyprop.process_start"   # the pid's start time (Linux /proc), against pid reuse
ENDED_BY_TAG = "galaxyprop.ended_by"
STALE_WITHOUT_PID_S = 24 * 3600                  # a RUNNING run with no pid tag older than this is stale
PARENT_TAG = "mlflow.parentRunId"
log = logging.getLogger(__name__)
logging.getLogger("mlflow").setLevel(logging.WARNING)
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def use_stores(stores: Stores) -> None:
    """Point MLflow at the project's stores (creating nothing: enough to load registered models)."""
    mlflow.set_tracking_uri(stores.tracking_uri)
    mlflow.set_registry_uri(stores.tracking_uri)


def preload(stores: Stores) -> None:
    """Import (not open) the client modules of the stores, in a process about to fork lanes that each open
    them: the children then share the imports instead of repeating them (~1 s each for a database store)."""
    if stores.tracking_uri.split(":", 1)[0] in ("sqlite", "postgresql", "mysql", "mssql"):
        import mlflow.store.model_registry.sqlalchemy_store
        import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
    import optuna.storages  # noqa: F401


#: The experiment's description (MLflow shows the `mlflow.note.content` tag) and the kind MLflow's UI opens
#: it as (`mlflow.experimentKind`: classic model training, not the GenAI layout).
EXPERIMENT_TAGS = {
    "mlflow.experimentKind": "custom_model_development",
    "mlflow.note.content": (
        "galaxyprop: one run per pipeline stage. Each `train:<head>@<features>:<target>` run is one result: its "
        "params are the head's tuned hyperparameters, its tags head / features / target, its datasets the "
        "prepared splits (DVC hash as digest), and its metrics what the served, calibrated model gives: "
        "`val_crps`, `val_coverage_68`, ... (validation, out-of-fold calibration; the registry selects the "
        "lowest `val_crps` among results that pass the calibration rule) and `test_*` (the test split); "
        "`raw_val_*` / `raw_test_*` are the uncalibrated head, `tuning_val_*` the best Optuna trial. "
        "Filter `tags.target = 'z'` and sort by `metrics.val_crps` to compare the results of one target."),
}


#: Seconds a tracking server has to answer its /health before a command gives up on it.
SERVER_TIMEOUT_S = 5.0


def check_server(uri: str, timeout: float = SERVER_TIMEOUT_S) -> None:
    """A tracking server (http(s)://) that does not answer its /health within `timeout` is one line here,
    not minutes of MLflow's retries and then a traceback."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout):
            return
    except urllib.error.HTTPError as err:
        reason = f"HTTP {err.code} from /health"
    except (OSError, ValueError) as err:
        reason = str(getattr(err, "reason", err))
    raise GalaxypropError(f"tracking server {uri} does not answer ({reason}): start it (`galaxyprop server ...`) or "
                          "point MLFLOW_TRACKING_URI at the store to use")


def connect(stores: Stores) -> str:
    """Point MLflow at the project's stores (a tracking server must answer first: `check_server`; a SQLite
    file must pass SQLite's check: `integrity.check_store`); create the experiment if needed (with its
    description and kind, `EXPERIMENT_TAGS`); return its id."""
    if stores.tracking_uri.startswith(("http://", "https://")):
        check_server(stores.tracking_uri)
    from galaxyprop.tracking.integrity import check_store

    for uri in (stores.tracking_uri, stores.optuna_storage):    # a damaged SQLite file: one line, nothing written
        check_store(uri)
    use_stores(stores)
    experiment = mlflow.get_experiment_by_name(stores.experiment)
    if experiment is None:      # a tracking server with served artifacts chooses the location itself
        location = None if stores.artifact_location is None else f"{stores.artifact_location.rstrip('/')}/{stores.experiment}"
        experiment_id = mlflow.create_experiment(stores.experiment, artifact_location=location, tags=EXPERIMENT_TAGS)
    else:
        experiment_id = experiment.experiment_id
        from galaxyprop.tracking.relocation import check_location

        moved = check_location(stores.tracking_uri, stores.artifact_location, stores.experiment,
                               experiment.artifact_location)
        if moved:
            log.warning(moved)
        for key, value in EXPERIMENT_TAGS.items():      # an experiment made before these tags; a user's own kept
            if key not in experiment.tags:
                MlflowClient().set_experiment_tag(experiment_id, key, value)
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def flatten(params: Mapping, prefix: str = "") -> dict[str, object]:
    """{'a': {'b': 1}} -> {'a.b': 1}; long values are truncated to MLflow's limit."""
    flat: dict[str, object] = {}
    for key, value in params.items():
        name = mlflow_key(f"{prefix}{key}")
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)[:_MAX_PARAM_LENGTH]
    return flat


def _process_start(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot, from /proc; None where there is no /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]     # field 22; the command name in () may hold spaces


def process_tags() -> dict[str, str]:
    """The tags that say which process runs a stage: host, pid and (on Linux) the pid's start time."""
    tags = {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}
    start = _process_start(os.getpid())
    if start is not None:
        tags[PROCESS_START_TAG] = start
    return tags


def _alive(pid: int, started: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:       # someone else's live process
        pass
    if started is None:
        return True
    now = _process_start(pid)
    return now is None or now == started      # a different start time: the pid was reused


def _why_stale(run, host: str, now_ms: int) -> str | None:
    """Why a RUNNING run is left over from a process that is gone (None: it may still be running)."""
    tags = run.data.tags
    pid = tags.get(PID_TAG)
    if pid is None:
        age = (now_ms - (run.info.start_time or now_ms)) / 1000
        return f"no pid tag and started {age / 3600:.0f} h ago" if age > STALE_WITHOUT_PID_S else None
    if tags.get(HOST_TAG) != host or not pid.isdigit():
        return None        # another machine's process: it cannot be checked from here
    if _alive(int(pid), tags.get(PROCESS_START_TAG)):
        return None
    return f"its process {pid} on {host} is gone"


def _end_failed(client: MlflowClient, experiment_id: str, run_id: str, note: str) -> list[str]:
    """End `run_id` and its RUNNING descendants FAILED, tagged with `note`; return their ids."""
    ended = []
    todo = [run_id]
    while todo:
        current = todo.pop()
        client.set_tag(current, ENDED_BY_TAG, note)
        client.set_terminated(current, "FAILED")
        ended.append(current)
        children = client.search_runs([experiment_id], f"tags.{PARENT_TAG} = '{current}' and attributes.status = 'RUNNING'")
        todo += [child.info.run_id for child in children]
    return ended


def end_stale_runs(stage: str, new_run_id: str, experiment_id: str) -> list[str]:
    """End FAILED the RUNNING runs in the experiment whose process is gone: of any stage, on this host with
    a pid that no longer runs (or was reused), so that a stage killed and then restored by DVC from its run
    cache (it never reruns) is ended by the next stage that runs (`register` always does); of `stage`, also
    those with no pid tag started over `STALE_WITHOUT_PID_S` ago. With their RUNNING child runs (trials,
    registrations). Runs of other hosts are left alone. Returns the ids ended."""
    client = MlflowClient()
    host, now_ms = socket.gethostname(), int(time.time() * 1000)
    ended = []
    for run in client.search_runs([experiment_id], "attributes.status = 'RUNNING'"):
        if run.info.run_id == new_run_id or PARENT_TAG in run.data.tags:
            continue
        if PID_TAG not in run.data.tags and run.data.tags.get("stage") != stage:
            continue
        why = _why_stale(run, host, now_ms)
        if why is not None:
            note = f"run {new_run_id} of stage {stage}: {why}"
            ended += _end_failed(client, experiment_id, run.info.run_id, note)
            log.warning("ended FAILED the %s run %s left RUNNING (%s)", stage, run.info.run_id, why)
    return ended


@contextmanager
def stage_run(stores: Stores, run_name: str, params: Mapping | None = None,
              tags: Mapping[str, str] | None = None) -> Iterator[mlflow.ActiveRun]:
    """An MLflow run for one stage; ended FAILED (and the error re-raised) if the stage fails.

    The run is tagged with its stage, host and pid; runs of the same stage left RUNNING by a process
    that is gone (killed) are ended FAILED first (`end_stale_runs`)."""
    experiment_id = connect(stores)
    stage = run_name.split(":")[0]
    all_tags = {"stage": stage, "git_commit": git_commit(), **process_tags(), **(tags or {})}
    run = mlflow.start_run(run_name=run_name, tags=all_tags)
    try:
        end_stale_runs(stage, run.info.run_id, experiment_id)
    except Exception as err:      # housekeeping: never the reason a stage fails
        log.warning("could not check for %s runs left RUNNING: %s", stage, err)
    try:
        log_params(params or {})
        yield run
    except BaseException:
        mlflow.end_run(status="FAILED")
        raise
    try:
        end_orphaned_children(run.info.run_id, experiment_id)
    except Exception as err:      # housekeeping, as above
        log.warning("could not check the child runs of %s: %s", run_name, err)
    mlflow.end_run(status="FINISHED")


def end_orphaned_children(parent_run_id: str, experiment_id: str) -> list[str]:
    """End FAILED the RUNNING child runs of a finishing stage run whose process is gone (a tuning
    worker killed mid-trial: Optuna retried its trial, MLflow's run of it would stay RUNNING)."""
    client = MlflowClient()
    host, now_ms, ended = socket.gethostname(), int(time.time() * 1000), []
    for child in client.search_runs([experiment_id], f"tags.{PARENT_TAG} = '{parent_run_id}' and "
                                                     f"attributes.status = 'RUNNING'"):
        why = _why_stale(child, host, now_ms) if PID_TAG in child.data.tags else None
        if why is not None:
            ended += _end_failed(client, experiment_id, child.info.run_id, f"stage run {parent_run_id}: {why}")
    return ended


@contextmanager
def child_run(run_name: str, tags: Mapping[str, str] | None = None) -> Iterator[mlflow.ActiveRun]:
    """A nested run under the active stage run (one per registered model or trial)."""
    with mlflow.start_run(run_name=run_name, nested=True, tags=dict(tags or {})) as run:
        yield run


def mlflow_key(name: str) -> str:
    """A param/metric name MLflow accepts: `@` (as in `knn@photometry`) becomes `:`, any other
    character it forbids (e.g. the `*` of a catalogue's any-PHOTSYS responses) becomes `_`."""
    return re.sub(r"[^\w\-. :/]", "_", name.replace("@", ":"))


def log_metrics(metrics: Mapping[str, float], prefix: str = "", step: int | None = None) -> None:
    """Log the finite numbers of a (nested) mapping to the active run, at `step` for curves."""
    finite = {mlflow_key(f"{prefix}{k}"): float(v) for k, v in flatten(metrics).items()
              if _is_number(v)}
    if finite:
        mlflow.log_metrics(finite, step=step)


def _is_number(value: object) -> bool:
    try:
        return float(value) == float(value)  # drops NaN
    except (TypeError, ValueError):
        return False


def set_tags(tags: Mapping[str, object]) -> None:
    mlflow.set_tags({k: str(v) for k, v in tags.items()})


def log_params(params: Mapping) -> None:
    """Log a (nested) mapping as the active run's params (flattened with dots)."""
    if params:
        mlflow.log_params(flatten(params))


def log_dict(values: Mapping, name: str) -> None:
    """A mapping as a JSON artifact of the active run (settings too large or too head-specific for params)."""
    mlflow.log_dict(dict(values), name)


@contextmanager
def trial_run(trial, params: Mapping, run_prefix: str, parent_run_id: str | None = None) -> Iterator[mlflow.ActiveRun]:
    """A nested run for one Optuna trial, open while it trains (so its curves land in it), under
    `parent_run_id` (default: the active run; a forked tuning worker has none of its own and names
    the stage's run).

    A pruned trial ends FINISHED with the tag `optuna_state=PRUNED`; a failed one ends FAILED;
    either way the stage's run stays the active parent.
    """
    import optuna

    from galaxyprop.tracking import WORKER_ATTR

    tags = {"optuna_trial": str(trial.number), "optuna_study": trial.study.study_name, **process_tags()}
    if WORKER_ATTR in trial.user_attrs:
        tags["optuna_worker"] = str(trial.user_attrs[WORKER_ATTR])
    run = mlflow.start_run(run_name=f"{run_prefix}:trial-{trial.number}", nested=True, tags=tags,
                           parent_run_id=parent_run_id)
    try:
        mlflow.log_params(flatten(params))
        yield run
    except optuna.TrialPruned:
        mlflow.set_tag("optuna_state", "PRUNED")
        mlflow.end_run(status="FINISHED")
        raise
    except BaseException:
        mlflow.set_tag("optuna_state", "FAIL")
        mlflow.end_run(status="FAILED")
        raise
    mlflow.set_tag("optuna_state", "COMPLETE")
    mlflow.end_run(status="FINISHED")


def log_datasets(frames: Mapping[str, object], source: str, digest: str | None) -> None:
    """Log each split (`context` -> pandas frame) as an MLflow dataset input of the active run, named after
    the split, from `source`, with `digest` (the DVC hash of the data) so that runs on the same data match."""
    import warnings

    import mlflow.data

    for context, frame in frames.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)     # MLflow's hint about integer columns (the ids)
            dataset = mlflow.data.from_pandas(frame, source=source, name=f"{Path(source).name}/{context}",
                                              digest=(digest or "")[:36] or None)
            mlflow.log_input(dataset, context=context)


def result_metrics(split: str, metrics: Mapping[str, float]) -> dict[str, float]:
    """A result's metrics under the keys every head shares: `<split>_<metric>`, and the uncalibrated
    head's (`<metric>_raw`) as `raw_<split>_<metric>`."""
    out = {}
    for key, value in metrics.items():
        name = f"raw_{split}_{key.removesuffix('_raw')}" if key.endswith("_raw") else f"{split}_{key}"
        if _is_number(value):
            out[mlflow_key(name)] = float(value)
    return out


def log_to_result_runs(experiment_id: str, metrics: Mapping[tuple[str, str], Mapping[str, float]]) -> list[str]:
    """Log `metrics[(head, target)]` to the latest finished `train` run of that result (tags `head`,
    `target`), so that its run holds the figures the served model gives; the results with no such run."""
    client = MlflowClient()
    latest: dict[tuple[str, str], str] = {}
    for run in client.search_runs([experiment_id], "tags.stage = 'train' and attributes.status = 'FINISHED'",
                                  order_by=["attributes.start_time DESC"], max_results=5000):
        latest.setdefault((run.data.tags.get("head", ""), run.data.tags.get("target", "")), run.info.run_id)
    missing, now = [], int(time.time() * 1000)
    for result, values in metrics.items():
        run_id = latest.get(result)
        if run_id is None:
            missing.append(f"{result[0]}/{result[1]}")
            continue
        client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in values.items()])
    return missing


def log_artifacts(paths: list[str | Path], artifact_path: str | None = None) -> None:
    for path in paths:
        if Path(path).is_dir():
            mlflow.log_artifacts(str(path), artifact_path=artifact_path)
        elif Path(path).exists():
            mlflow.log_artifact(str(path), artifact_path=artifact_path)
