"""Data in: the source readers (catalogues, AstroCLIP files, FastSpecFit, the mock survey), the schema
that normalises ids and columns, and the train/val/test splits."""
