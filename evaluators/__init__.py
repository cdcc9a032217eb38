"""The scoring library, free of KFP: use it from a notebook as well as from the pipeline.

Every evaluator takes the same per-example records and returns one score per record; aggregates are
always computed from that per-example table (``evaluators.scores.aggregate``), never separately.
"""

from evaluators.base import Evaluator, MetricSpec
from evaluators.lexical import ExactMatch, TokenF1
from evaluators.scores import aggregate, score_examples
from evaluators.semantic import SemanticSimilarity

__all__ = ["Evaluator", "ExactMatch", "MetricSpec", "SemanticSimilarity", "TokenF1", "aggregate", "score_examples"]
