"""Explanations with measured fidelity: why each item was recommended.

* :mod:`.attribution`: occlusion of history events (one batched model call);
* :mod:`.evidence`: collaborative counts and shared content;
* :mod:`.rules`: which serving rule moved an item;
* :mod:`.sentence`: the short sentence built from those reasons;
* :mod:`.explainer`: all of it for a page of recommendations;
* :mod:`.plot`: the events x items attribution heatmap.
"""

from shopformer.explain.attribution import Attribution, OcclusionConfig, attribute, attribute_many, item_scorer
from shopformer.explain.evidence import CoCounts, content_evidence
from shopformer.explain.explainer import ExplainConfig, Explainer, Explanation, titles_from
from shopformer.explain.reasons import ItemExplanation
from shopformer.explain.sentence import SentenceConfig, build_sentence

__all__ = [
    "Attribution",
    "CoCounts",
    "ExplainConfig",
    "Explainer",
    "Explanation",
    "ItemExplanation",
    "OcclusionConfig",
    "SentenceConfig",
    "attribute",
    "attribute_many",
    "build_sentence",
    "content_evidence",
    "item_scorer",
    "titles_from",
]
