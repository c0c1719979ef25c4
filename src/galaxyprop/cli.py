"""The user's commands: `galaxyprop promote`, `galaxyprop ui`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from galaxyprop.errors import GalaxypropError, exit_on_error

DEFAULT_TEST_DATA = "data/prepared/test.parquet"
EXIT_REFUSED = 1


def _promote(args: argparse.Namespace) -> int:
    import pandas as pd

    from galaxyprop import registry, tracking
    from galaxyprop.config import Stores, load_params, section
    from galaxyprop.metrics import target_metrics

    params = load_params(args.params)
    registry.model_name(args.target)  # unknown target: a clear error before touching any store
    target_params = section(params, f"targets.{args.target}")
    metric = args.metric or target_params["metric"]
    test_path = Path(args.test_data)
    if not test_path.exists():
        raise GalaxypropError(f"{test_path}: test split not found (run `dvc repro` or pass --test-data)")
    test = pd.read_parquet(test_path)
    if args.target not in test.columns:
        raise GalaxypropError(f"{test_path}: no column '{args.target}' with the true values")
    tracking.connect(Stores.from_params(params))

    def score(model_uri: str) -> float:
        import mlflow.pyfunc

        model = mlflow.pyfunc.load_model(model_uri)
        predicted = model.predict(_model_input(model, test, test_path, Path(args.images)))["prediction"].to_numpy()
        metrics = target_metrics(args.target, test[args.target].to_numpy(), predicted,
                                 target_params["outlier_threshold"], section(params, "evaluation.eta_threshold"))
        if metric not in metrics:
            raise GalaxypropError(f"unknown metric '{metric}' for {args.target}; choose from {sorted(metrics)}")
        return metrics[metric]

    try:
        result = registry.promote(args.target, args.version, score, metric, args.force, args.reason)
    except registry.PromotionRefused as refused:
        print(f"galaxyprop: {refused}", file=sys.stderr)
        return EXIT_REFUSED
    print(result.message)
    return 0


def _model_input(model, test, test_path: Path, images_path: Path):
    """The test rows as the model takes them: catalogue columns, or cutouts from the image file."""
    schema = model.metadata.get_input_schema()
    if not schema.is_tensor_spec():
        missing = [c for c in schema.input_names() if c not in test.columns]
        if missing:
            raise GalaxypropError(f"{test_path}: lacks the model's input columns {missing}")
        return test[schema.input_names()]
    from galaxyprop.data.astroclip_hdf5 import AstroclipFile
    from galaxyprop.data.desi import IMAGE_ROW

    if IMAGE_ROW not in test.columns:
        raise GalaxypropError(f"{test_path}: the model takes image cutouts but the test split has no '{IMAGE_ROW}'")
    with AstroclipFile(images_path) as file:
        return file.cutouts(test[IMAGE_ROW].to_numpy())


def _ui(args: argparse.Namespace) -> int:
    from galaxyprop.config import Stores, load_params

    stores = Stores.from_params(load_params(args.params))
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", stores.tracking_uri,
               "--default-artifact-root", stores.artifact_location, "--host", "127.0.0.1", "--port", str(args.port)]
    print(f"MLflow UI on http://127.0.0.1:{args.port} (Ctrl-C stops it)", flush=True)
    # Replace this process, so that its PID is the server's and stopping it stops the server.
    os.execve(sys.executable, command, {**os.environ, "MLFLOW_TRACKING_URI": stores.tracking_uri})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="galaxyprop", description=__doc__)
    parser.add_argument("--params", default="params.yaml", help="the project's params file")
    commands = parser.add_subparsers(dest="command", required=True)

    promote = commands.add_parser("promote", help="move the `production` alias to a candidate, if no worse")
    promote.add_argument("target", help="z or kcorr_r01")
    promote.add_argument("--version", help="model version to promote (default: the `candidate` alias)")
    promote.add_argument("--metric", help="metric to compare (default: params targets.<target>.metric)")
    promote.add_argument("--test-data", default=DEFAULT_TEST_DATA, help="test split to recompute metrics on")
    promote.add_argument("--images", default="data/raw/astroclip.h5",
                         help="AstroCLIP-layout file with the test split's cutouts (image models)")
    promote.add_argument("--force", action="store_true", help="promote even if worse (needs --reason)")
    promote.add_argument("--reason", help="why a forced promotion is right; recorded as a tag")
    promote.set_defaults(func=_promote)

    ui = commands.add_parser("ui", help="MLflow UI on 127.0.0.1 against the project's store")
    ui.add_argument("--port", type=int, default=5000)
    ui.set_defaults(func=_ui)
    return parser


@exit_on_error
def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    sys.exit(args.func(args))


if __name__ == "__main__":
    main()
