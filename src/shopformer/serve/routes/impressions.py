"""Pausing impression logging at runtime (admin scope; every switch is in the audit log).

``GET /v1/admin/impressions`` says whether this process logs impressions and what its
log has done; ``PUT`` with ``{"paused": true}`` stops logging new answers (they still get a
``request_id`` and are counted on ``/metrics``; what was queued is written before the
answer) and ``{"paused": false}`` logs again. For an operator who must stop writing to a
struggling store without a restart, and for benchmarks/impression_overhead.py, which
switches logging on and off over one continuous load. The switch is this process's
(``app.state.feedback``): with ``--workers N`` or replicas, each has its own log; a restart
logs again (``SHOPFORMER_IMPRESSIONS`` decides). 409 when logging is off altogether.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from shopformer.feedback.impressions import ImpressionLog
from shopformer.feedback.writer_process import ProcessImpressionLog

from ..access import Principal, audit
from ..deps import require_admin
from ..schemas import ErrorResponse
from .events import WRITE_ERRORS

router = APIRouter(prefix="/v1/admin/impressions", tags=["admin"])
OFF = {409: {"model": ErrorResponse, "description": "impression logging is off (SHOPFORMER_IMPRESSIONS=0)"},
       **WRITE_ERRORS}


class ImpressionSwitch(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"paused": True}]})
    paused: bool


class ImpressionLogState(BaseModel):
    """This process's impression log; counts since it started."""

    paused: bool
    queued: int = Field(description="rows waiting to be written")
    written: int = Field(description="rows handed to the store")
    dropped: int = Field(description="rows not written: the queue was full, or the store refused them")
    skipped: int = Field(description="answers not logged because logging was paused")
    flushed: int | None = Field(default=None, description="rows this pause wrote (null: not a pause)")


def _log(request: Request) -> ImpressionLog | ProcessImpressionLog:
    found = request.app.state.feedback.log
    if found is None:
        raise HTTPException(409, "impression logging is off (SHOPFORMER_IMPRESSIONS=0): nothing to pause")
    return found


def _state(found: ImpressionLog | ProcessImpressionLog, flushed: int | None = None) -> ImpressionLogState:
    return ImpressionLogState(paused=found.paused, queued=found.queued, written=found.written,
                              dropped=found.dropped + found.failed, skipped=found.skipped, flushed=flushed)


@router.get("", response_model=ImpressionLogState, dependencies=[Depends(require_admin)], responses=OFF)
def impression_log_state(request: Request) -> ImpressionLogState:
    """Whether this process's impression logging is paused, and its log's counts."""
    return _state(_log(request))


@router.put("", response_model=ImpressionLogState, responses=OFF)
def switch_impression_log(request: Request, body: ImpressionSwitch,
                          principal: Annotated[Principal, Depends(require_admin)]) -> ImpressionLogState:
    """Pause (``paused: true``; the queue is written first) or resume impression logging
    in this process. Audited as ``impressions_pause`` / ``impressions_resume``."""
    found = _log(request)
    flushed = found.pause() if body.paused else None
    if not body.paused:
        found.resume()
    audit(request, principal, "impressions_pause" if body.paused else "impressions_resume", "impressions", "ok",
          {"flushed": flushed} if flushed is not None else None)
    return _state(found, flushed)
