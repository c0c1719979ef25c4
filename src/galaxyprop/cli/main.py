"""The user's commands: `galaxyprop promote|check|rollback|history|models|lineage|predict|drift|serve|ui|server|summary`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from galaxyprop.errors import GalaxypropError, exit_on_error


def _column_map(args: argparse.Namespace, version, model):
    """(name, column map) to read the input with: `--source`, or the source the version was trained on
    (its `dataset` tag) when the input is a catalogue that lacks the model's columns; else None."""
    from galaxyprop.config import load_params, section
    from galaxyprop.data.catalog import CatalogSpec
    from galaxyprop.data.catalogue_file import CatalogueFile
    from galaxyprop.deploy.batch import ModelInput, input_is_catalogue
    from galaxyprop.validation.project import SCHEMAS

    name = args.source
    if name is None:
        need = ModelInput.of(model)
        trained_on = version.tags.get("dataset")
        if not (need.columns and trained_on and input_is_catalogue(args.input)):
            return None
        by_lower = CatalogueFile(args.input).by_lower
        if all(c.lower() in by_lower for c in need.columns):
            return None
        data = section(load_params(args.params, SCHEMAS), "data")
        if data.get("sources", {}).get(trained_on, {}).get("kind") != "catalog":
            return None
        name = trained_on
        print(f"{args.input} lacks the model's columns: reading it with the column map of source "
              f"'{name}' (the version's training data)", flush=True)
    return name, CatalogSpec.of_source(section(load_params(args.params, SCHEMAS), "data"), name)


def _model_for_inputs(args: argparse.Namespace, targets) -> str:
    """The registered model for what the user gives: `z` alone names the model of the inputs at hand
    (an AstroCLIP file and --catalogue: galaxyprop-z; the file alone: galaxyprop-z-images; a
    catalogue: galaxyprop-z-catalogue); `z-images` etc. name one outright."""
    from galaxyprop.deploy.batch import input_is_catalogue
    from galaxyprop.registry import versions as registry

    target, kind = registry.parse_model(args.target, targets)
    if args.target != target or target == registry.SPECTRUM_MODEL:      # an id, or the spectrum model's own
        return args.target
    if args.catalogue:
        kind = "multimodal"
    else:
        kind = "catalogue" if input_is_catalogue(args.input) else "images"
    return registry.model_id(target, kind)


def _predict(args: argparse.Namespace) -> int:
    from collections import Counter

    import mlflow.pyfunc

    from galaxyprop.cli.outputs import check_output
    from galaxyprop.cli.registry import connect
    from galaxyprop.config import Stores, load_params
    from galaxyprop.deploy.batch import QP_SUFFIXES, parquet_to_qp, predict_file
    from galaxyprop.registry import versions as registry
    from galaxyprop.validation.project import SCHEMAS

    # where it may write, before any store is opened
    check_output(args.output, "--output", Stores.from_params(load_params(args.params, SCHEMAS)), args.force)
    params = connect(args)
    args.target = _model_for_inputs(args, params["targets"])
    version = registry.resolve_version(args.target, args.model)
    _warn_if_bypassed(args.target, args.model)
    uri = f"models:/{version.name}/{version.version}"
    model = mlflow.pyfunc.load_model(uri)
    source, dropped = _column_map(args, version, model), Counter()
    as_qp = args.format == "qp" or (args.format is None and Path(args.output).suffix.lower() in QP_SUFFIXES)
    table = f"{args.output}.parquet" if as_qp else args.output     # qp: the densities first, then converted
    n = predict_file(model, uri, args.input, table, args.chunk_size, args.densities or as_qp, args.restart,
                     photsys=args.photsys, source=source, dropped=dropped, catalogue=args.catalogue)
    print(_support_line(table, model))
    if as_qp:
        parquet_to_qp(table, args.output)
        Path(table).unlink()
    print(f"wrote {n} predictions of {version.name} v{version.version} to {args.output}"
          + (" (a qp ensemble: qp.read opens it)" if as_qp else ""))
    if dropped:
        print(f"skipped {sum(dropped.values())} rows the column map cannot use: "
              + "; ".join(f"{reason}: {k}" for reason, k in sorted(dropped.items())))
    return 0


def _warn_if_bypassed(model: str, ref: str) -> None:
    """One line on stderr when `production` is used but no recorded gate decision put it where it is."""
    from galaxyprop.registry import versions as registry

    bypassed = registry.unrecorded_production(model) if ref == registry.PRODUCTION else None
    if bypassed:
        print(f"galaxyprop: warning: {bypassed}", file=sys.stderr)


def _support_line(output: str, model) -> str:
    """How many predicted galaxies lie outside the model's training support, or why it cannot say."""
    import pyarrow.parquet as pq

    if "in_support" not in pq.read_schema(output).names:
        metadata = model.metadata.metadata or {}
        if "wavelength" in metadata:        # the spectrum model: its latent head records no support of its own
            return "the spectrum model flags no answers as outside its training support"
        support = metadata.get("training_support", "not recorded: saved before galaxyprop recorded the training "
                                                   "support")
        return f"training support: {support}; the answers are not flagged"
    inside = pq.read_table(output, columns=["in_support"]).column("in_support").to_numpy()
    outside = int((~inside).sum())
    return (f"{outside} of {len(inside)} galaxies lie outside the model's training support (in_support false: "
            "their answers extrapolate)" if outside else f"all {len(inside)} galaxies lie inside the model's "
                                                         "training support")


def _server_env(args: argparse.Namespace) -> dict[str, str]:
    from galaxyprop.config import Stores, load_params
    from galaxyprop.validation.project import SCHEMAS

    stores = Stores.from_params(load_params(args.params, SCHEMAS))
    return {**os.environ, "MLFLOW_TRACKING_URI": stores.tracking_uri}


def _serve(args: argparse.Namespace) -> int:
    from galaxyprop.cli.registry import connect
    from galaxyprop.registry import versions as registry

    connect(args)
    version = registry.resolve_version(args.target, args.model)   # a clear error if the alias is not set
    _warn_if_bypassed(args.target, args.model)
    uri = f"models:/{version.name}/{args.model}" if args.model.isdigit() else f"models:/{version.name}@{args.model}"
    from galaxyprop.registry.serving import MAX_BODY_ENV, MAX_ROWS_ENV, SERVED_MODEL_ENV

    # MLflow's scoring server (the same /invocations, /ping, /health, /version), with concise 4xx bodies.
    command = [sys.executable, "-m", "uvicorn", "--factory", "galaxyprop.registry.serving:create_app",
               "--host", "127.0.0.1", "--port", str(args.port), "--workers", str(args.workers)]
    print(f"serving {uri} (version {version.version}) on http://127.0.0.1:{args.port}/invocations", flush=True)
    limits = {MAX_ROWS_ENV: args.max_rows, MAX_BODY_ENV: args.max_body_mb}
    # Replace this process, so that its PID is the server's and stopping it stops the server.
    os.execve(sys.executable, command, {**_server_env(args), SERVED_MODEL_ENV: uri,
                                        **{k: str(v) for k, v in limits.items() if v is not None}})


def _check_database(uri: str) -> None:
    """Connect once to the backend database, so that a wrong URI or a stopped server is one line here and
    not a traceback from the server's workers."""
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(uri)
    except (sqlalchemy.exc.ArgumentError, sqlalchemy.exc.NoSuchModuleError, ImportError) as err:
        raise GalaxypropError(f"--backend-store-uri {uri}: not a database URI SQLAlchemy can open ({err})") from None
    try:
        with engine.connect():
            pass
    except sqlalchemy.exc.OperationalError as err:
        reason = str(err.orig).strip().splitlines()[0] if err.orig else str(err).splitlines()[0]
        raise GalaxypropError(f"--backend-store-uri {engine.url.render_as_string(hide_password=True)}: cannot connect "
                              f"({reason})") from None
    finally:
        engine.dispose()


def _server(args: argparse.Namespace) -> int:
    """The team store: MLflow's tracking server (runs, registry and UI) on 127.0.0.1, its runs and
    registry in a database (PostgreSQL), its artifacts served from --artifacts-destination."""
    if not args.backend_store_uri:
        raise GalaxypropError("galaxyprop server: give --backend-store-uri (e.g. postgresql://user@host/mlflow) or "
                              "set GALAXYPROP_BACKEND_STORE_URI")
    _check_database(args.backend_store_uri)
    destination = args.artifacts_destination
    if "://" not in destination:
        Path(destination).mkdir(parents=True, exist_ok=True)
        destination = Path(destination).resolve().as_uri()
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(args.port),
               "--backend-store-uri", args.backend_store_uri, "--serve-artifacts",
               "--artifacts-destination", destination, "--workers", str(args.workers)]
    # MLflow's GenAI job runner (about ten ~250 MB processes) serves nothing galaxyprop uses: off unless asked for.
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}
    if args.auth:
        command += ["--app-name", "basic-auth"]
        env.update(_auth_env(args))
    print(f"team store on http://127.0.0.1:{args.port} (runs and registry in the database, artifacts in {destination}"
          + (f"; users and permissions: MLflow's basic-auth app, admin '{args.admin_user}'" if args.auth else
             "; no users: anyone who reaches it may write (--auth for a team)")
          + f"); point the project at it with MLFLOW_TRACKING_URI=http://127.0.0.1:{args.port}"
          + (" and MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD" if args.auth else ""), flush=True)
    os.execve(sys.executable, command, env)


def _auth_env(args: argparse.Namespace) -> dict[str, str]:
    """The environment of MLflow's basic-auth app: its config file (users database, READ by default, the admin's
    name), the admin's password (from a file or the environment, never a default) and a CSRF secret."""
    import secrets

    if args.admin_password_file:
        try:
            password = Path(args.admin_password_file).read_text().strip()
        except OSError as err:
            raise GalaxypropError(f"--admin-password-file {args.admin_password_file}: {err.strerror}") from None
    else:
        password = os.environ.get("GALAXYPROP_ADMIN_PASSWORD", "")
    if not password:
        raise GalaxypropError("galaxyprop server --auth: give the admin's password in $GALAXYPROP_ADMIN_PASSWORD or a "
                              "file (--admin-password-file); there is no default password")
    state = Path("mlruns").resolve()
    state.mkdir(parents=True, exist_ok=True)
    database = args.auth_database_uri or f"sqlite:///{state / 'server_auth.db'}"
    config = state / "server_auth.ini"
    config.write_text("[mlflow]\ndefault_permission = READ\n"
                      f"database_uri = {database}\nadmin_username = {args.admin_user}\n"
                      "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
    secret = os.environ.get("MLFLOW_FLASK_SERVER_SECRET_KEY") or secrets.token_hex(32)
    return {"MLFLOW_AUTH_CONFIG_PATH": str(config), "MLFLOW_AUTH_ADMIN_PASSWORD": password,
            "MLFLOW_FLASK_SERVER_SECRET_KEY": secret}


def _ui(args: argparse.Namespace) -> int:
    from galaxyprop.config import Stores, load_params
    from galaxyprop.validation.project import SCHEMAS

    stores = Stores.from_params(load_params(args.params, SCHEMAS))
    if stores.tracking_uri.startswith(("http://", "https://")):
        print(f"the tracking server {stores.tracking_uri} serves the MLflow UI itself: open it in a browser", flush=True)
        return 0
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", stores.tracking_uri,
               "--default-artifact-root", stores.artifact_location, "--host", "127.0.0.1", "--port", str(args.port)]
    print(f"MLflow UI on http://127.0.0.1:{args.port} (Ctrl-C stops it)", flush=True)
    os.execve(sys.executable, command, _server_env(args))


def positive(kind: type):
    """An argparse type: a number of `kind` above 0 (for int, at least 1), refused in one line otherwise."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {'whole number' if kind is int else 'number'}") from None
        if not 0 < value < float("inf"):
            raise argparse.ArgumentTypeError(f"{text} is not a finite number above 0")
        return value
    return parse


positive_int, positive_float = positive(int), positive(float)


def port(text: str) -> int:
    """A TCP port (1-65535) for argparse, refused in one line otherwise."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (1-65535)")
    return value


def build_parser() -> argparse.ArgumentParser:
    from importlib.metadata import version

    from galaxyprop.cli import drift as drift_cli
    from galaxyprop.cli import summary
    from galaxyprop.cli.registry import add_commands

    parser = argparse.ArgumentParser(prog="galaxyprop", description=__doc__)
    parser.add_argument("--version", action="version", version=f"galaxyprop {version('galaxyprop')}")
    parser.add_argument("--params", default="params.yaml", help="the project's params file")
    commands = parser.add_subparsers(dest="command", required=True)
    add_commands(commands)
    drift_cli.add_command(commands)
    summary.add_command(commands)

    predict = commands.add_parser("predict", help="predict a file of any size in chunks, to Parquet keyed by TARGETID")
    predict.add_argument("target", help="a target of params targets (z, kcorr_r01, logmstar, ...): the model for "
                                        "the inputs given (AstroCLIP file and --catalogue: galaxyprop-<target>; "
                                        "the file alone: <target>-images; a catalogue: <target>-catalogue); or one "
                                        "of those ids, e.g. z-images")
    predict.add_argument("--input", required=True,
                         help="AstroCLIP-layout HDF5 or Parquet shards (images) or catalogue (.parquet/.fits/.csv)")
    predict.add_argument("--catalogue", help="the galaxies' catalogue (FastSpecFit FITS, or any catalogue with the "
                                             "model's flux columns and TARGETID), joined with --input on TARGETID, "
                                             "for a model that takes cutouts and fluxes together")
    predict.add_argument("--output", required=True, help="Parquet file to write (never inside the stores; inside a "
                                                         "pipeline output only with --force)")
    predict.add_argument("--force", action="store_true", help="write --output even over a pipeline output")
    predict.add_argument("--format", choices=["parquet", "qp"], default=None,
                         help="parquet (one row per galaxy), or qp: an HDF5 file of the densities as a qp ensemble "
                              "(LSST DESC's format; RAIL reads it) with the ids and point estimates as ancillary "
                              "data (default: qp for a .hdf5/.h5 --output, else parquet)")
    predict.add_argument("--model", default="production", help="alias or version number (default: production)")
    predict.add_argument("--chunk-size", type=positive_int, default=4096,
                         help="galaxies per chunk (memory is bounded by it)")
    predict.add_argument("--densities", action="store_true", help="also write each galaxy's density on the grid")
    predict.add_argument("--restart", action="store_true", help="discard partial results of an interrupted run")
    predict.add_argument("--photsys", help="survey field of every galaxy (N or S), for a model calibrated per field; "
                                           "a catalogue's PHOTSYS column gives it per row")
    predict.add_argument("--source", help="read the input with this data.sources entry's column map (magnitudes, "
                                           "extinction, id column); default: the model's training source "
                                           "when the input lacks the model's flux columns")
    predict.set_defaults(func=_predict)

    serve = commands.add_parser("serve", help="serve a registered model over HTTP on 127.0.0.1")
    serve.add_argument("target", help="a registered model's id: z (cutouts and catalogue fluxes), z-images, "
                                      "z-catalogue, kcorr_r01, ...")
    serve.add_argument("--model", default="production", help="alias or version number (default: production)")
    serve.add_argument("--port", type=port, default=5001)
    serve.add_argument("--workers", type=positive_int, default=1)
    serve.add_argument("--max-rows", type=positive_int,
                       help="galaxies one request may hold (HTTP 413 beyond; the server says its default at start)")
    serve.add_argument("--max-body-mb", type=positive_float,
                       help="megabytes one request body may hold (HTTP 413 beyond; the server says its default)")
    serve.set_defaults(func=_serve)

    ui = commands.add_parser("ui", help="MLflow UI on 127.0.0.1 against the project's store")
    ui.add_argument("--port", type=port, default=5000)
    ui.set_defaults(func=_ui)

    server = commands.add_parser("server", help="the team store: an MLflow tracking server on 127.0.0.1 backed by a "
                                                "database (PostgreSQL), with served artifacts")
    server.add_argument("--backend-store-uri", default=os.environ.get("GALAXYPROP_BACKEND_STORE_URI"),
                        help="SQLAlchemy URI of the runs and registry database, e.g. postgresql://user@127.0.0.1/mlflow "
                             "(default: $GALAXYPROP_BACKEND_STORE_URI)")
    server.add_argument("--artifacts-destination", default="mlruns/served-artifacts",
                        help="where the server keeps the artifacts it serves (a folder, or s3://..., ...)")
    server.add_argument("--port", type=port, default=5000)
    server.add_argument("--workers", type=positive_int, default=2, help="server worker processes")
    server.add_argument("--auth", action="store_true",
                        help="MLflow's basic-auth app: every request needs a user; the admin is created on the first "
                             "start, with the password from --admin-password-file or $GALAXYPROP_ADMIN_PASSWORD "
                             "(there is no default password)")
    server.add_argument("--admin-user", default="admin", help="--auth: the admin's user name")
    server.add_argument("--admin-password-file", default=None, help="--auth: a file holding the admin's password")
    server.add_argument("--auth-database-uri", default=None,
                        help="--auth: SQLAlchemy URI of the users and permissions database "
                             "(default: sqlite:///mlruns/server_auth.db in this folder)")
    server.set_defaults(func=_server)
    return parser


@exit_on_error
def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    sys.exit(args.func(args))


if __name__ == "__main__":
    main()
