"""The data model, readers, cleaning, splits and the synthetic world."""

from metarec.data.cleaning import CleaningReport
from metarec.data.dataset import Dataset, build_dataset, pair_matrix
from metarec.data.queries import Queries
from metarec.data.readers import READERS, load_dataset

__all__ = ["READERS", "CleaningReport", "Dataset", "Queries", "build_dataset", "load_dataset", "pair_matrix"]
