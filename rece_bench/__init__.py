"""rece-bench: RECE and baseline losses for SASRec, measured for quality, peak memory and time."""

__version__ = "0.1.0"
