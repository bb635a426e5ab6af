"""llmft.data: acquires, normalises, validates, cleans, splits, fingerprints and reports the datasets every later
stage trains on. Input: a DatasetRequest; output: a DatasetManifest and a folder of Parquet files (one per split)."""

__version__ = "0.10.0"
STAGE = "llmft.data"
