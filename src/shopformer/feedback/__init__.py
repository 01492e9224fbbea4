"""The feedback loop: what was shown and what came of it (``impressions``: the log of
answers shown; ``attribution``: an event joined to its answer as it is posted;
``online``: the metrics as pure functions over frames; ``metrics``: the Prometheus
counters; ``online_report``: ``shopformer report online``), A/B experiments, and
retraining with a safety gate (``warmstart``, ``gate``, ``retrain``)."""
