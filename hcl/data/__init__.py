"""Datasets: MMSA feature pickles, transcript CSVs, extracted feature folders, synthetic tasks."""

from hcl.data.sample import Batch, FeatureSample, collate

__all__ = ["Batch", "FeatureSample", "collate"]
