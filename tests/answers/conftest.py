"""A tiny synthetic shop's Q&A with known best answers, and a hashing encoder standing in
for MiniLM (fast, deterministic; the real model is used in test_end_to_end.py)."""

from __future__ import annotations

import re
import zlib
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from shopformer.answers.adapter import AdapterConfig
from shopformer.answers import Answerer, AnswererConfig, RerankConfig, SplitConfig, frame_from_records, temporal_split

#: (question variants, answer, questionType, answerType): one topic per row
TOPICS = [
    (["what are the dimensions of this unit", "how big is it, dimensions please", "what size is this unit"],
     "the unit dimensions: 24 inches wide and 30 inches tall, a compact size", "open-ended", None),
    (["does it come with a water filter", "is a water filter included", "does the water filter come with it"],
     "yes it comes with a water filter included in the box", "yes/no", "Y"),
    (["is it noisy when running", "is the motor loud when running", "is it loud"],
     "no it is very quiet when running, not loud, you barely hear the motor", "yes/no", "N"),
    (["where is the reset button located", "where can i find the reset button", "where is the reset"],
     "the reset button is on the bottom panel behind the kick plate", "open-ended", None),
    (["how much power does it use", "what is the wattage", "how many watts of power"],
     "it uses 1500 watts of power on high", "open-ended", None),
    (["can i install it myself", "is installation easy to do myself", "could i install this without a plumber"],
     "yes easy to install yourself in about an hour with basic tools", "yes/no", "Y"),
    (["does it work with 220 volt outlets", "will it run on 220 volts", "is it 220 volt compatible"],
     "no it is 110 volt only, not 220 volt, you would need a converter", "yes/no", "N"),
]
WORD = re.compile(r"[a-z0-9]+")


class HashingEncoder:
    """Unit bag-of-words vectors hashed into ``dim`` buckets (a MiniLM stand-in)."""

    def __init__(self, dim: int = 128) -> None:
        self.dim = dim
        self.calls = 0

    def encode(self, texts: list[str], progress: bool = True) -> np.ndarray:
        self.calls += 1
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            for w in WORD.findall(t.lower()):
                out[i, zlib.crc32(w.encode()) % self.dim] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def synthetic_records(products: int = 40, per_product: int = 5, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    start = datetime(2014, 1, 1, tzinfo=UTC)
    out = []
    for p in range(products):
        for n, t in enumerate(rng.choice(len(TOPICS), per_product, replace=False)):
            variants, answer, qtype, atype = TOPICS[t]
            rec = {"asin": f"P{p:03d}", "question": variants[rng.integers(len(variants))], "answer": answer,
                   "questionType": qtype,
                   "unixTime": int((start + timedelta(days=int(rng.integers(0, 400)), hours=n)).timestamp())}
            if atype is not None:
                rec["answerType"] = atype
            out.append(rec)
    return out


def quick_config() -> AnswererConfig:
    return AnswererConfig(rerank=RerankConfig(leaves_grid=(7,), max_trees=60, early_stopping=20, min_child_samples=5),
                          adapter=AdapterConfig(max_epochs=6, patience=2, lr=3e-3))


@pytest.fixture(scope="session")
def synthetic():
    frame, dropped = frame_from_records(synthetic_records())
    split = temporal_split(frame, SplitConfig(valid_frac=0.2, test_frac=0.2))
    encoder = HashingEncoder()
    answerer = Answerer.fit(quick_config(), frame, split, encoder)
    yield {"frame": frame, "split": split, "answerer": answerer, "encoder": encoder,
           "qvecs": encoder.encode(frame["question"].to_list())}
    answerer.index.close()
