"""Order risk: the probability that an order line is cancelled or returned, and unusual
behaviour on the event stream.

- :mod:`.labels`: cancellation invoices of UCI Online Retail matched to the lines they undo;
- :mod:`.features`: features of a line from what was known strictly before it (no leakage);
- :mod:`.tabular`: logistic regression on RFM features (baseline) and LightGBM;
- :mod:`.sequence_net`, :mod:`.sequence`: the sequence network over the customer's past lines;
- :mod:`.order_risk`: the temporal split, fitting, and the served :class:`OrderRiskModel`;
- :mod:`.stream`: :class:`StreamRiskScorer`, bursts, inhuman speed, repeats and impossible
  sequences scored as events arrive.

Nothing heavy is imported here: import the module you need.
"""
