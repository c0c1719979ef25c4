"""Running registered models over users' files: chunked batch prediction of a catalogue or an AstroCLIP
file (deploy.batch) and the same predictor as a Spark pandas UDF over survey-size tables (deploy.spark)."""
