"""AstroCLIP images + spectra in every published layout behind one reader, `AstroclipFile(path)`:
flat HDF5 (the mock survey's), the grouped release file `astroclip_desi.1.1.5.h5`, and the
HuggingFace Parquet shards. The writer writes the flat layout."""

from galaxyprop.data.astroclip.base import AstroclipFile, open_astroclip
from galaxyprop.data.astroclip.flat import AstroclipWriter, FlatFile, astroclip_writer
from galaxyprop.data.astroclip.grouped import GroupedFile
from galaxyprop.data.astroclip.layout import DESI_WAVE, LAYOUTS, N_SPECTRUM_PIXELS, TRAIN_FRACTION, astroclip_layout
from galaxyprop.data.astroclip.parquet import ParquetShards, shard_paths, shard_split

__all__ = ["AstroclipFile", "AstroclipWriter", "DESI_WAVE", "FlatFile", "GroupedFile", "LAYOUTS",
           "N_SPECTRUM_PIXELS", "ParquetShards", "TRAIN_FRACTION", "astroclip_layout", "astroclip_writer",
           "open_astroclip", "shard_paths", "shard_split"]
