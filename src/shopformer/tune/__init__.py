"""Time-budgeted tuning on validation only: ``shopformer train --auto --minutes M``."""

from .priors import DataStats, starting_setting
from .search import AutoConfig, AutoResult, AutoSearch, TrialRecord

__all__ = ["AutoConfig", "AutoResult", "AutoSearch", "DataStats", "TrialRecord", "starting_setting"]
