"""tunekit-fill-mask: masked-language-model fine-tuning and cloze prediction for tunekit.

Example::

    import tunekit
    run = tunekit.finetune(task="fill-mask", data="corpus.txt", epochs=3)
    run.predict("The capital of France is [MASK].", top_k=5)
"""

from .head import MaskedLMHead
from .masking import Masker, word_ids_for
from .task import FillMaskConfig, FillMaskTask

__all__ = ["FillMaskConfig", "FillMaskTask", "MaskedLMHead", "Masker", "word_ids_for"]
