"""Request and response schemas of ``POST /v1/answers`` (serve/routes/answers.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, field_validator

from .schemas import _In, _Out

#: most answers one request may ask for
MAX_ANSWERS_K = 100


class AnswersRequest(_In):
    # strict: a number (NaN included) is no item id or question; pydantic's lax mode took NaN
    model_config = ConfigDict(extra="forbid", strict=True)

    item_id: str = Field(min_length=1, max_length=256, description="the product asked about")
    question: str = Field(min_length=1, max_length=2000, description="the customer's question")
    k: int = Field(5, ge=1, le=MAX_ANSWERS_K, description=f"answers to return, 1..{MAX_ANSWERS_K}")

    @field_validator("question", "item_id")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value


class RankedAnswerOut(_Out):
    rank: int = Field(description="1 = best")
    qa_id: int = Field(description="the stored Q&A's row in the answers folder")
    answer: str
    question: str = Field(description="the past question this answer was given to")
    score: float = Field(description="the re-ranker's score (higher is better; no fixed scale)")
    bm25: float = Field(description="BM25 of the question against the answer (0: no word in common)")
    cosine: float = Field(description="MiniLM cosine of the question and the answer")


class YesNoOut(_Out):
    answer: Literal["yes", "no"]
    confidence: float = Field(description="calibrated probability that this answer is right (0.5..1)")
    abstain: bool = Field(False, description="the confidence is under the answerer's minimum: show the answer as "
                                             "unsure (or leave it to a person)")
    model: str = Field("legacy", description="what answered: a learner of the answer folder, or \"prior\" (the "
                                             "majority answer, when no learner beat it on validation)")


class AnswersResponse(_Out):
    item_id: str
    question: str
    answers: list[RankedAnswerOut]
    p_yes_no_question: float = Field(description="probability that the question is a yes/no question")
    yes_no: YesNoOut | None = Field(None, description="for a yes/no question (p >= 0.5): the predicted answer")
    answers_stored: int = Field(description="the product's stored answers, all of them scored")
