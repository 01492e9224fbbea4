"""A/B experiments through the API (admin scope; every change is in the audit log):
start, stop, list, report. The same functions as ``shopformer experiment ...``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from shopformer.feedback.abtest import RATES, ABConfig
from shopformer.feedback.experiments import ExperimentError, start_experiment, stop_experiment
from shopformer.store.experiments import all_experiments
from shopformer.store.experiments import get as get_experiment

from ..access import Principal, audit
from ..deps import get_service, require_admin
from ..recommender import RecommendationService
from ..schemas import ErrorResponse
from .events import WRITE_ERRORS

router = APIRouter(prefix="/v1/admin/experiments", tags=["experiments"])
Name = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class VariantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Name
    run: str = Field(min_length=1, max_length=4096, description="a run folder on the server")


class ExperimentIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"name": "sasrec-vs-ease", "variants": [{"name": "a", "run": "runs/ease"}, {"name": "b", "run": "runs/sasrec"}],
         "split": "50/50"}]})
    name: str = Name
    variants: list[VariantIn] = Field(min_length=2, max_length=8, description="the first is the control")
    split: str | None = Field(default=None, max_length=64, description="shares, e.g. 50/50 (default: equal)")


class VariantOut(BaseModel):
    name: str
    run: str
    version: str
    share: float


class ExperimentOut(BaseModel):
    name: str
    status: str
    variants: list[VariantOut]
    started_at: str
    stopped_at: str | None = None
    created_by: str | None = None


BAD = {400: {"model": ErrorResponse, "description": "refused: bad variant run, name taken, another running"},
       **WRITE_ERRORS}


@router.post("", response_model=ExperimentOut, status_code=201, responses=BAD)
def start(
    body: ExperimentIn, request: Request,
    principal: Annotated[Principal, Depends(require_admin)],
    service: Annotated[RecommendationService, Depends(get_service)],
) -> ExperimentOut:
    """Start an experiment. This process loads the variants' runs before answering;
    the others within ``SHOPFORMER_SYNC_S`` seconds."""
    try:
        experiment = start_experiment(service.store, body.name, [(v.name, Path(v.run)) for v in body.variants],
                                      body.split, principal.actor)
    except ExperimentError as exc:
        audit(request, principal, "experiment_start", body.name, "failed", {"error": str(exc)[:500]})
        raise HTTPException(400, str(exc)) from None
    audit(request, principal, "experiment_start", body.name, "ok", {"variants": experiment.to_rows()})
    try:
        service.sync_experiment()
    except Exception as exc:  # noqa: BLE001 - recorded; this process keeps its previous state
        raise HTTPException(400, f"experiment {body.name!r} is recorded, but a variant's run failed to load here: "
                                 f"{exc}; stop it and check the runs") from None
    return _out(service, body.name)


@router.post("/{name}/stop", response_model=ExperimentOut,
             responses={**BAD, 404: {"model": ErrorResponse, "description": "unknown experiment"}})
def stop(
    name: str, request: Request,
    principal: Annotated[Principal, Depends(require_admin)],
    service: Annotated[RecommendationService, Depends(get_service)],
) -> ExperimentOut:
    """Stop an experiment (its data stays for the report)."""
    try:
        stop_experiment(service.store, name)
    except ExperimentError as exc:
        raise HTTPException(400 if "already" in str(exc) else 404, str(exc)) from None
    audit(request, principal, "experiment_stop", name, "ok")
    service.sync_experiment()
    return _out(service, name)


@router.get("", response_model=list[ExperimentOut], dependencies=[Depends(require_admin)], responses=WRITE_ERRORS)
def list_(service: Annotated[RecommendationService, Depends(get_service)]) -> list[ExperimentOut]:
    """Every experiment, newest first."""
    return [ExperimentOut(**e.to_dict()) for e in all_experiments(service.store)]


@router.get("/{name}/report", dependencies=[Depends(require_admin)],
            responses={404: {"model": ErrorResponse, "description": "unknown experiment"}, **WRITE_ERRORS})
def report(
    name: str, request: Request, service: Annotated[RecommendationService, Depends(get_service)],
    metric: Annotated[str, Query(pattern="^(" + "|".join(RATES) + ")$")] = "click",
    mde: Annotated[float, Query(gt=0, le=10)] = 0.10,
    alpha: Annotated[float, Query(gt=0, lt=1)] = 0.05,
) -> dict:
    """Per variant: customers, answers, click / add-to-cart / purchase rates with 95%
    intervals, revenue per customer, differences to the control with intervals and
    Holm-adjusted p-values; ``decision``: significant, no_difference or too_small.
    Counts every process's answers written to the store (each writes its queue within
    ``SHOPFORMER_IMPRESSIONS_FLUSH_S``; this one writes its own first)."""
    from shopformer.feedback.experiment_report import experiment_report

    request.app.state.feedback.flush()  # this process's answers still queued count too
    try:
        return experiment_report(service.store, name, ABConfig(metric=metric, mde=mde, alpha=alpha)).to_dict()
    except ExperimentError as exc:
        raise HTTPException(404, str(exc)) from None


def _out(service: RecommendationService, name: str) -> ExperimentOut:
    return ExperimentOut(**get_experiment(service.store, name).to_dict())
