"""The registered models through `mlflow.pyfunc.spark_udf` on a local Spark session equal pyfunc's answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from galaxyprop.deploy.spark import local_session, spark_predict

from conftest import mlflow_store
from registered_models import register_models, stores

pytestmark = pytest.mark.slow   # simulation, servers or concurrency: left out of `make test-fast`

pytest.importorskip("pyspark", reason="pyspark is in the dev extra; it needs Java 17 or 21")


@pytest.fixture(scope="module")
def models(tmp_path_factory, params):
    root = tmp_path_factory.mktemp("store")
    with mlflow_store(stores(root).tracking_uri):
        yield register_models(root, params)


def test_spark_udf_equals_pyfunc_for_catalogue_and_image_models(models, tmp_path):
    fluxes = [f"flux_{b}" for b in "ugriz"]
    catalogue = models.galaxies[fluxes].assign(TARGETID=np.arange(len(models.galaxies)))
    cutouts = pd.DataFrame({"TARGETID": np.arange(len(models.images)),
                            "image": list(models.images.reshape(len(models.images), -1))})
    photsys = np.where(np.arange(len(catalogue)) % 3 == 0, "N", "S")
    with local_session(cores=2, scratch=tmp_path) as spark:
        by_flux = spark_predict(spark, models.catalogue_uri, spark.createDataFrame(catalogue), fluxes,
                                ["TARGETID"]).toPandas().sort_values("TARGETID")
        # a catalogue keyed by names: the id column of any type rides along
        named = catalogue.drop(columns="TARGETID").assign(PHOTSYS=photsys, NAME=[f"gal{i:05d}" for i in range(len(catalogue))])
        by_field = spark_predict(spark, models.catalogue_uri, spark.createDataFrame(named),
                                 [*fluxes, "PHOTSYS"], ["NAME"]).toPandas().sort_values("NAME")
        all_north = spark_predict(spark, models.catalogue_uri, spark.createDataFrame(catalogue), fluxes,
                                  ["TARGETID"], photsys="N").toPandas().sort_values("TARGETID")
        frame = spark.createDataFrame(cutouts, schema="TARGETID long, image array<float>")
        by_image = spark_predict(spark, models.image_uri, frame, ["image"], ["TARGETID"],
                                 densities=True).toPandas().sort_values("TARGETID")
    columns = ["prediction", "spread", "q02", "q16", "q50", "q84", "q98", "support_distance"]
    want = models.catalogue.predict(models.galaxies[fluxes])
    np.testing.assert_allclose(by_flux[columns], want[columns], rtol=1e-9)
    assert by_flux["in_support"].tolist() == want["in_support"].tolist()       # the support flags ride along
    assert "in_support" not in by_image.columns                                 # an image model records none
    # each row's PHOTSYS picks its field's calibration, as in process; `photsys` gives one for all
    want = models.catalogue.predict(models.galaxies[fluxes].assign(PHOTSYS=photsys))
    np.testing.assert_allclose(by_field[columns], want[columns], rtol=1e-9)
    assert by_field["NAME"].tolist() == named["NAME"].tolist()
    want = models.catalogue.predict(models.galaxies[fluxes], params={"photsys": "N"})
    np.testing.assert_allclose(all_north[columns], want[columns], rtol=1e-9)
    assert not np.allclose(all_north["q84"], by_flux["q84"])
    want = models.image.predict(models.images)
    np.testing.assert_allclose(by_image[["prediction", "q16", "q84"]], want[["prediction", "q16", "q84"]], rtol=1e-6)
    np.testing.assert_allclose(np.stack(by_image["density"]), np.stack(want["density"]), rtol=1e-6)
