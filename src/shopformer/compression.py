"""Smaller runs from a trained one, for serving: distillation into a small student
(``train/distill.py``) and int8 quantization (``models/quantize.py``), each written as a
normal run folder that ``load_run`` and the server read unchanged.
"""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from pathlib import Path

from shopformer.artifact import Run, load_run, run_version, save_run, with_settings
from shopformer.dataset import describe
from shopformer.experiment import reload_data
from shopformer.models.quantize import QuantizeConfig, quantize_run
from shopformer.models.sequential import SASRecRecommender, TransformerConfig
from shopformer.train.distill import DistillConfig, choose

__all__ = ["QuantizeConfig", "distil_run", "quantize_run", "student_config"]


def student_config(teacher: TransformerConfig, params: dict[str, str] | None = None) -> TransformerConfig:
    """The teacher's settings as one network (``members=1``, no calibration), with
    ``params`` (``--set`` strings such as ``arch.d_model=64``) applied on top."""
    config = replace(teacher, members=1, calibration=replace(teacher.calibration, enabled=False))
    return with_settings(config, params, "the student", "student setting {key}")


def distil_run(teacher_folder: Path, out: Path, params: dict[str, str] | None = None,
               candidates: list[DistillConfig] | None = None, say=lambda message: None) -> Run:  # noqa: ANN001
    """Distil the run in ``teacher_folder`` into a student built from ``params`` on the
    teacher's own data and split; save it to ``out``. With several ``candidates`` the one
    with the best validation NDCG@10 is kept. ``run.json`` records ``distilled_from``
    (teacher run and version), ``alpha``, ``temperature`` and the validation grid."""
    teacher_folder = Path(teacher_folder)
    teacher = load_run(teacher_folder)
    if not isinstance(teacher.model, SASRecRecommender) or teacher.model.name != "sasrec":
        raise ValueError(f"{teacher_folder} holds {teacher.model.name}: the teacher must be a sasrec run")
    if teacher.info.get("quantized"):
        raise ValueError(f"{teacher_folder} is quantized: distil from its float parent")
    config = student_config(teacher.model.config, params)
    data, split = reload_data(teacher)
    fit_on = teacher.info.get("fit_on", "train")
    train, valid = (split.train, split.valid) if fit_on == "train" else (data.sequences, None)
    t0 = time.perf_counter()
    student, chosen, grid = choose(teacher.model, config, train, data.n_items, valid,
                                   candidates or [DistillConfig()], say)
    seconds = time.perf_counter() - t0
    info = {
        "data_dir": teacher.info["data_dir"],
        "dataset": describe(data),
        "fit_on": fit_on,
        "fit_seconds": round(seconds, 3),
        "model_config": asdict(student.config),
        "training": student.training_setup,
        "distilled_from": {"run": str(teacher_folder.resolve()), "version": run_version(teacher_folder)},
        "alpha": chosen.alpha,
        "temperature": chosen.temperature,
        "distill_grid": grid,
    }
    if teacher.info.get("bounded_memory"):
        info["bounded_memory"] = True
    save_run(out, student, data.items, data.users, teacher.data_config, info)
    return load_run(out)
