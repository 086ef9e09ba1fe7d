"""tunekit-pair: sentence-pair tasks for tunekit.

- ``pair-sim``: are two texts the same in meaning? (LCQMC, Quora QP, PAWS)
- ``pair-cls`` (alias ``nli``): multi-class pair classification (entailment / neutral /
  contradiction, stance)
- ``sts``: a similarity score (STS-B style 0–5, any range)

Each trains a cross-encoder (both texts in one input, with token type ids) by default, or
a siamese bi-encoder with ``architecture="bi-encoder"`` (mean pooling, cosine similarity),
whose runs also give ``run.encode(texts)`` and ``run.similarity(a, b)``.
"""

from .data import read_pairs
from .run import PairRun
from .tasks import PairClassifyTask, PairSimTask, PairTask, StsTask

__all__ = ["PairClassifyTask", "PairRun", "PairSimTask", "PairTask", "StsTask", "read_pairs"]
