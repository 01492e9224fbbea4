"""The explainer cache on a run that names no data folder (made outside `train`, e.g.
the serving benchmark's synthetic catalogs): explanations go without collaborative
evidence instead of failing."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest

from shopformer.serve.explanations import ExplainerCache


@pytest.mark.parametrize("info", [{}, {"data_dir": None}])
def test_a_run_without_a_data_folder_has_no_cocounts(info, caplog):
    served = SimpleNamespace(version="v1", run=SimpleNamespace(info=info, folder=Path("/runs/x")))
    with caplog.at_level(logging.WARNING, logger="shopformer.serve"):
        assert ExplainerCache()._cocounts(served) is None
    assert "names no data folder" in caplog.text


def test_a_missing_data_folder_is_reported_too(tmp_path, caplog):
    served = SimpleNamespace(version="v1", run=SimpleNamespace(info={"data_dir": str(tmp_path / "gone")},
                                                                folder=tmp_path))
    with caplog.at_level(logging.WARNING, logger="shopformer.serve"):
        assert ExplainerCache()._cocounts(served) is None
    assert "without collaborative evidence" in caplog.text
