"""Customer-service answers: ``POST /v1/answers`` {item_id, question, k} -> the product's
best past answers with scores and, for a yes/no question, yes or no with a confidence.

The Q&A corpus is a folder built by ``shopformer answer build`` and named by
SHOPFORMER_ANSWERS_DIR; it is loaded on the first request (a server that never answers
questions pays nothing) and the sentence model on the first question. No API key is
needed: the answers are public product content, no customer's data. A plain function
(FastAPI's thread pool): encoding the question is CPU work.
"""

from __future__ import annotations


from fastapi import APIRouter, HTTPException, Request

from shopformer.answers import Answerer, UnknownProduct

from ..deps import loaded_once
from ..answers_schemas import AnswersRequest, AnswersResponse, RankedAnswerOut, YesNoOut
from ..schemas import ErrorResponse

router = APIRouter(prefix="/v1", tags=["answers"])
ERRORS = {
    404: {"model": ErrorResponse, "description": "no Q&A stored for the item, or this server serves no answers "
                                                 "(no SHOPFORMER_ANSWERS_DIR)"},
    503: {"model": ErrorResponse, "description": "the configured answers folder cannot be read"},
}


def get_answerer(request: Request) -> Answerer:
    """The app's Answerer, loaded from SHOPFORMER_ANSWERS_DIR on first use (a failed load
    is tried again by the next request)."""
    return loaded_once(request, "answerer", request.app.state.settings.answers_dir, Answerer.load,
                       "no Q&A corpus: set SHOPFORMER_ANSWERS_DIR to a folder built by "
                       "`shopformer answer build --qa FILE --out DIR`",
                       lambda exc: f"the answers folder cannot be loaded: {exc}", (FileNotFoundError, ValueError, OSError))


@router.post("/answers", response_model=AnswersResponse, responses=ERRORS)
def answers(body: AnswersRequest, request: Request) -> AnswersResponse:
    """The ``k`` best of ``item_id``'s stored answers for ``question`` (BM25 + MiniLM,
    fused, re-ranked; see shopformer.answers) and, when the question is a yes/no one,
    ``yes_no``: the predicted answer with its calibrated confidence."""
    answerer = get_answerer(request)  # after the body is validated: bad input is a 422 on any server
    try:
        found = answerer.answer(body.item_id, body.question, body.k)
    except UnknownProduct:
        raise HTTPException(404, f"no Q&A stored for item {body.item_id!r}") from None
    ranked = [RankedAnswerOut(rank=r, qa_id=a.qa_id, answer=a.answer, question=a.question, score=round(a.score, 6),
                              bm25=round(a.bm25, 6), cosine=round(a.cosine, 6))
              for r, a in enumerate(found.answers, start=1)]
    yes_no = (YesNoOut(answer=found.yes_no.answer, confidence=round(found.yes_no.confidence, 4),
                       abstain=found.yes_no.abstain, model=found.yes_no.model)
              if found.yes_no is not None else None)
    return AnswersResponse(item_id=body.item_id, question=body.question, answers=ranked,
                           p_yes_no_question=round(found.p_yes_no_question, 4), yes_no=yes_no,
                           answers_stored=len(answerer.rows_of(body.item_id)))
