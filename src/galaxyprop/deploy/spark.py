"""A registered model over a survey-size catalogue with Spark: `mlflow.pyfunc.spark_udf`.

On a cluster, give `spark_predict` the cluster's session and a Spark DataFrame read from the
catalogue (Parquet on an object store, say); Spark runs the model on every executor, a partition at
a time. Here the same code runs on a local session (`local_session`), which the tests use.

Image models take a column of cutouts flattened in C order from (3, H, W) (an `array<float>`):
MLflow reshapes each batch to the (−1, 3, H, W) of the model's signature. Catalogue models take
the flux columns their signature names.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from galaxyprop.errors import GalaxypropError

OUTPUT_TYPES = {"prediction": "double", "spread": "double", "q02": "double", "q16": "double", "q50": "double",
                "q84": "double", "q98": "double", "in_support": "boolean", "support_distance": "double",
                "density": "array<float>"}


@contextmanager
def local_session(cores: int = 2, scratch: str | Path | None = None) -> Iterator:
    """A local Spark session bound to 127.0.0.1 whose JVM is gone when the block ends."""
    try:
        from pyspark import SparkContext
        from pyspark.sql import SparkSession
    except ImportError:
        raise GalaxypropError("pyspark is not installed (pip install pyspark; it needs Java 17 or 21)") from None
    # The workers must run this interpreter (the one with galaxyprop), set before the JVM starts.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    if scratch is not None:
        os.environ["SPARK_LOCAL_DIRS"] = str(scratch)
    spark = (SparkSession.builder.master(f"local[{cores}]").appName("galaxyprop")
             .config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
             .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
             .config("spark.sql.shuffle.partitions", str(cores))
             .config("spark.sql.execution.arrow.pyspark.enabled", "true").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    gateway = SparkContext._gateway
    try:
        yield spark
    finally:
        jvm = gateway.proc
        spark.stop()
        gateway.shutdown()
        SparkContext._gateway = SparkContext._jvm = None
        jvm.stdin.close()          # the JVM exits at the end of its standard input; spark.stop() alone leaves it
        jvm.wait(timeout=60)


def spark_predict(spark, model_uri: str, frame, inputs: list[str], keep: list[str], densities: bool = False,
                  photsys: str | None = None):
    """`frame` (a Spark DataFrame) with the model's outputs as columns beside the columns `keep`.

    `inputs` are the model's input columns: the flux columns of a catalogue model (and `PHOTSYS`
    for each row's survey field), or the one column of flattened cutouts of an image model.
    `photsys` names the survey field of every row, for a model calibrated per field."""
    import mlflow.pyfunc

    # the columns the version serves (its signature): the support flags only where it recorded its support
    outputs = mlflow.models.get_model_info(model_uri).signature.outputs.input_names()
    if densities and "density" not in outputs:
        raise GalaxypropError(f"{model_uri} gives no density (its head has none)")
    fields = {k: v for k, v in OUTPUT_TYPES.items() if k in outputs and (densities or k != "density")}
    udf = mlflow.pyfunc.spark_udf(spark, model_uri, env_manager="local",
                                  result_type=", ".join(f"{k} {v}" for k, v in fields.items()),
                                  params={"photsys": photsys} if photsys else None)
    return frame.withColumn("_out", udf(*inputs)).select(*keep, *(f"_out.{k}" for k in fields))
