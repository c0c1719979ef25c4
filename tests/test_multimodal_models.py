"""Models that take cutouts and catalogue fluxes together: combined feature sources, the three registered
kinds of a target, and a two-input model through pyfunc, batch predict (an AstroCLIP file joined with its
catalogue) and HTTP serving, with clear errors when one input is missing."""

from __future__ import annotations

from collections import Counter

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from galaxyprop.calibration import CalibrationSettings
from galaxyprop.deploy.batch import ModelInput, predict_file
from galaxyprop.errors import GalaxypropError
from galaxyprop.evaluation.densities import Grid
from galaxyprop.features.combined import CombinedFeatures, parts_of, source_input_kind
from galaxyprop.features.measured import MeasuredFeatures
from galaxyprop.features.multimodal import Multimodal
from galaxyprop.features.photometry import PhotometryFeatures
from galaxyprop.heads import make_head
from galaxyprop.registry import versions as registry
from galaxyprop.registry.predictor import Predictor
from galaxyprop.registry.serving import input_error
from galaxyprop.tracking import runs as tracking

from conftest import mlflow_store
from registered_models import served, stores, write_astroclip

STAMP, BANDS = 32, ("g", "r", "z")


def galaxies(n: int, seed: int = 0) -> tuple[np.ndarray, pd.DataFrame, np.ndarray]:
    """Round Gaussian galaxies: the target is a colour (catalogue) plus a size (the cutouts alone)."""
    rng = np.random.default_rng(seed)
    flux = rng.uniform(20, 200, (n, 3))
    sigma = rng.uniform(1.0, 3.0, n)
    y, x = np.mgrid[:STAMP, :STAMP] - (STAMP - 1) / 2
    profile = np.exp(-(x**2 + y**2)[None] / (2 * sigma[:, None, None] ** 2)) / (2 * np.pi * sigma[:, None, None] ** 2)
    images = flux[:, :, None, None] * profile[:, None] + rng.normal(0, 0.05, (n, 3, STAMP, STAMP))
    catalogue = pd.DataFrame({f"flux_{b}": flux[:, i] for i, b in enumerate(BANDS)})
    target = -2.5 * np.log10(flux[:, 0] / flux[:, 1]) + sigma
    return images.astype(np.float32), catalogue, target


def combined_encoder(images: np.ndarray, catalogue: pd.DataFrame, components: dict | None = None) -> CombinedFeatures:
    parts = {"measured": MeasuredFeatures(), "photometry": PhotometryFeatures(bands=BANDS)}
    matrices = {"measured": parts["measured"].transform(images), "photometry": parts["photometry"].transform(catalogue)}
    return CombinedFeatures(parts, components).fit(matrices)


def test_combined_sources_join_their_parts_and_take_what_each_part_takes():
    images, catalogue, _ = galaxies(40)
    encoder = combined_encoder(images, catalogue, {"measured": 4})
    assert encoder.input_kind == "multimodal" and encoder.input_columns == ["flux_g", "flux_r", "flux_z"]
    assert encoder.names[:4] == [f"measured_pc{i:02d}" for i in range(4)]
    assert encoder.names[4:] == [f"photometry.{n}" for n in PhotometryFeatures(bands=BANDS).names]
    matrix = encoder.transform(Multimodal(images, catalogue))
    measured = MeasuredFeatures().transform(images)
    pca = encoder.reducers_["measured"]
    np.testing.assert_allclose(matrix[:, :4], pca.transform(measured.astype(np.float64)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(matrix[:, 4:], PhotometryFeatures(bands=BANDS).transform(catalogue), rtol=1e-6)
    # the 4 components keep the measurements' largest variances, in order
    assert np.all(np.diff(matrix[:, :4].var(axis=0)) < 0)
    assert source_input_kind("measured+photometry") == "multimodal"
    assert source_input_kind("image+measured") == "images" and source_input_kind("photometry_grz") == "catalog"
    assert source_input_kind("spectrum+photometry") is None
    with pytest.raises(GalaxypropError, match="cutouts and catalogue fluxes together"):
        encoder.transform(images)
    with pytest.raises(GalaxypropError, match="40 cutouts but 39 catalogue rows"):
        encoder.transform(Multimodal(images, catalogue.iloc[:39]))
    with pytest.raises(GalaxypropError, match="not a combined feature source"):
        parts_of("measured+measured")


def test_each_target_has_three_registered_models_named_by_what_they_take():
    assert [registry.model_id("z", k) for k in ("multimodal", "images", "catalogue")] == \
        ["z", "z-images", "z-catalogue"]
    assert registry.parse_model("kcorr_r01-catalogue") == ("kcorr_r01", "catalogue")
    assert registry.parse_model("z") == ("z", "multimodal")
    assert registry.model_name("z-images") == "galaxyprop-z-images"
    with pytest.raises(GalaxypropError, match="unknown model 'z-spectra'"):
        registry.model_name("z-spectra")
    with pytest.raises(GalaxypropError, match=r"unknown model 'age'; choose a target of params targets \(kcorr_r01, z\)"):
        registry.parse_model("age", ["z", "kcorr_r01"])     # the project's targets, given by the caller
    assert registry.model_ids(["z"]) == ["z", "z-images", "z-catalogue"]
    with pytest.raises(GalaxypropError, match="unknown kind of input"):
        registry.model_id("z", "spectra")


@pytest.fixture(scope="module")
def multimodal(tmp_path_factory):
    """A calibrated KNN on `measured+photometry`, registered as galaxyprop-z (two named inputs)."""
    root = tmp_path_factory.mktemp("store")
    images, catalogue, target = galaxies(900)
    encoder = combined_encoder(images[:500], catalogue[:500])
    inputs = Multimodal(images, catalogue)
    predictor = Predictor("z", encoder, make_head("knn", k=16).fit(encoder.transform(inputs.rows(slice(0, 500))),
                                                                  target[:500]), Grid(-2.0, 5.0, 140))
    predictor.calibrate(encoder.transform(inputs.rows(slice(500, 800))), target[500:800],
                        settings=CalibrationSettings(min_rows=100))
    with mlflow_store(stores(root).tracking_uri):
        tracking.connect(stores(root))
        with tracking.stage_run(stores(root), "register"):
            version = registry.register_predictor(predictor, inputs.rows(slice(0, 5)), {"head": "knn"}, {})
        uri = f"models:/galaxyprop-z/{version}"
        yield {"root": root, "uri": uri, "model": mlflow.pyfunc.load_model(uri), "predictor": predictor,
               "images": images[800:], "catalogue": catalogue[800:].reset_index(drop=True), "target": target[800:]}


def test_a_two_input_model_round_trips_through_pyfunc(multimodal):
    model, images, catalogue = multimodal["model"], multimodal["images"], multimodal["catalogue"]
    need = ModelInput.of(model)
    assert need.multimodal and need.flux_columns == ("flux_g", "flux_r", "flux_z")
    assert need.shape == (-1, 3, STAMP, STAMP)
    served = model.predict(need.tensors(images, catalogue))
    expected = multimodal["predictor"].predict(Multimodal(images, catalogue))
    np.testing.assert_allclose(served["q50"], expected["q50"], rtol=1e-6)
    # it learned from both inputs: the colour alone leaves the size's scatter (0.58), the size alone the colour's
    errors = served["prediction"] - multimodal["target"]
    assert np.sqrt(np.mean(errors**2)) < 0.3
    with pytest.raises(MlflowException, match="missing inputs|lacks the input 'fluxes'") as missing:
        model.predict({"cutouts": images[:3]})
    reason = input_error(missing.value)           # what batch predict and the server report: the reason alone
    assert "fluxes" in reason and "\n" not in reason and len(reason) < 200


def test_batch_predict_joins_an_astroclip_file_with_its_catalogue(multimodal, tmp_path):
    images, catalogue = multimodal["images"], multimodal["catalogue"]
    ids = np.arange(len(images)) + 5000
    astroclip = write_astroclip(tmp_path / "cutouts.h5", images, ids)
    table = catalogue.rename(columns=str.upper).assign(TARGETID=ids, PHOTSYS="S").iloc[::-1]
    table.iloc[5:].to_csv(tmp_path / "catalogue.csv", index=False)     # 5 galaxies without catalogue rows
    dropped = Counter()
    with mlflow_store(stores(multimodal["root"]).tracking_uri):
        n = predict_file(multimodal["model"], multimodal["uri"], astroclip, tmp_path / "out.parquet", chunk_size=37,
                         progress=False, dropped=dropped, catalogue=tmp_path / "catalogue.csv")
    out = pd.read_parquet(tmp_path / "out.parquet").set_index("TARGETID")
    assert n == len(images) - 5 and dropped == Counter({"TARGETID not in catalogue.csv": 5})
    keep = ~np.isin(ids, table["TARGETID"].iloc[:5])
    expected = multimodal["predictor"].predict(Multimodal(images[keep], catalogue[keep].reset_index(drop=True)),
                                               fields="S")
    np.testing.assert_allclose(out.loc[ids[keep], "q84"], expected["q84"], rtol=1e-6)
    with pytest.raises(GalaxypropError, match="give the catalogue too"):
        predict_file(multimodal["model"], multimodal["uri"], astroclip, tmp_path / "x.parquet", progress=False)
    with pytest.raises(GalaxypropError, match="give it the AstroCLIP file"):
        predict_file(multimodal["model"], multimodal["uri"], tmp_path / "catalogue.csv", tmp_path / "x.parquet",
                     progress=False)
    # a flux that is text: one line naming the catalogue, its column and row (was numpy's ValueError)
    column = table.columns[0]
    text = table.iloc[5:].astype({column: object})
    text.iloc[2, 0] = "abc"
    text.to_csv(tmp_path / "text.csv", index=False)
    with pytest.raises(GalaxypropError, match=rf"text.csv: column '{column}' holds text, not numbers \(row 2: 'abc'"):
        predict_file(multimodal["model"], multimodal["uri"], astroclip, tmp_path / "x.parquet", progress=False,
                     catalogue=tmp_path / "text.csv")


@pytest.mark.slow
def test_the_server_refuses_oversized_and_malformed_requests_before_the_model_sees_them(multimodal):
    """413 for more rows or bytes than the server takes (counted in MLflow's every input format), 415
    for a media type it cannot read, 400 for a body that is not JSON or is nested too deeply: one-line
    JSON reasons, never MLflow's 500; a request within the limits is answered."""
    import json

    from galaxyprop.registry.serving import MAX_BODY_ENV, MAX_ROWS_ENV

    images, catalogue = multimodal["images"][:3], multimodal["catalogue"][:3]
    fluxes = catalogue[["flux_g", "flux_r", "flux_z"]].to_numpy(np.float32)

    def request(n: int) -> bytes:
        return json.dumps({"inputs": {"cutouts": images[:n].tolist(), "fluxes": fluxes[:n].tolist()},
                           "params": {"photsys": "N"}}).encode()

    limit_mb = 1.5 * len(request(3)) / 2**20
    env = {MAX_ROWS_ENV: "2", MAX_BODY_ENV: str(limit_mb)}
    with served(stores(multimodal["root"]).tracking_uri, multimodal["uri"], **env) as post:
        status, body = post(request(2))
        assert status == 200 and len(json.loads(body)["predictions"]) == 2
        answers = {"rows": post(request(3)),
                   "records": post(json.dumps({"dataframe_records": [{"a": 1}] * 3}).encode()),
                   "bytes": post(b" " * int(2 * limit_mb * 2**20)),
                   "form": post(request(2), content_type=None),
                   "xml": post(b"<rows/>", content_type="application/xml"),
                   "not json": post(b"{'cutouts': [1, 2"),
                   "deep": post(b"[" * 100_000 + b"]" * 100_000)}
    statuses = {name: status for name, (status, _) in answers.items()}
    assert statuses == {"rows": 413, "records": 413, "bytes": 413, "form": 415, "xml": 415, "not json": 400,
                        "deep": 400}
    messages = {name: json.loads(body)["message"] for name, (_, body) in answers.items()}
    assert "3 rows in one request; this server takes at most 2" in messages["rows"]
    assert messages["records"] == messages["rows"]
    assert messages["bytes"].startswith("a body of ") and "MB; this server takes at most" in messages["bytes"]
    assert "'application/x-www-form-urlencoded': send application/json or text/csv" in messages["form"]
    assert messages["not json"].startswith("the body is not valid JSON (Expecting property name")
    assert messages["deep"] == "the JSON body is nested too deeply"


@pytest.mark.slow
def test_a_served_two_input_model_answers_both_and_400s_a_missing_one(multimodal):
    import json

    images, catalogue = multimodal["images"][:4], multimodal["catalogue"][:4]
    fluxes = catalogue[["flux_g", "flux_r", "flux_z"]].to_numpy(np.float32)
    with served(stores(multimodal["root"]).tracking_uri, multimodal["uri"]) as post:
        status, body = post(json.dumps({"inputs": {"cutouts": images.tolist(), "fluxes": fluxes.tolist()},
                                        "params": {"photsys": "N"}}).encode())
        assert status == 200
        expected = multimodal["predictor"].predict(Multimodal(images, catalogue), fields="N")
        np.testing.assert_allclose(pd.DataFrame(json.loads(body)["predictions"])["q16"], expected["q16"], rtol=1e-6)
        status, body = post(json.dumps({"inputs": {"cutouts": images.tolist()}}).encode())
        message = json.loads(body)["message"]
        assert status == 400 and "fluxes" in message and len(message) < 500
