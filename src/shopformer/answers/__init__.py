"""Customer-service answers: a customer's question about a product -> the best of that
product's past answers (BM25 + MiniLM, fused, re-ranked) and, for a yes/no question, yes
or no with a calibrated confidence. See answers/answerer.py; measured by
benchmarks/answers.py; served by ``POST /v1/answers`` and ``shopformer answer``."""

from .answerer import METHODS, Answer, Answerer, AnswererConfig, RankedAnswer, RerankConfig, UnknownProduct, YesNo
from .data import QAFormatError, SplitConfig, frame_from_records, load_qa, temporal_split
from .yesno import YesNoConfig, YesNoModel

__all__ = ["METHODS", "Answer", "Answerer", "AnswererConfig", "QAFormatError", "RankedAnswer", "RerankConfig",
           "SplitConfig", "UnknownProduct", "YesNo", "YesNoConfig", "YesNoModel", "frame_from_records", "load_qa",
           "temporal_split"]
