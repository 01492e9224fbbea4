"""Recommendation models. The baselines are always available; :data:`BASELINES` maps each
one's stable name to its class (an explicit table, nothing is looked up by name)."""

from shopformer.models.base import Recommender, recommend
from shopformer.models.ease import EASE, EASEConfig
from shopformer.models.itemknn import ItemKNN, ItemKNNConfig
from shopformer.models.popularity import MostPopular, PopularityConfig

BASELINES: dict[str, type] = {
    MostPopular.name: MostPopular,
    ItemKNN.name: ItemKNN,
    EASE.name: EASE,
}

__all__ = [
    "BASELINES",
    "EASE",
    "EASEConfig",
    "ItemKNN",
    "ItemKNNConfig",
    "MostPopular",
    "PopularityConfig",
    "Recommender",
    "recommend",
]
