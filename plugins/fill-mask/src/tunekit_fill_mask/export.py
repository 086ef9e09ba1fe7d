"""Export a fill-mask run as transformers' ``AutoModelForMaskedLM``.

The tunekit head *is* transformers' masked-LM head module (``cls`` for BERT/ERNIE,
``lm_head`` for RoBERTa), built from the same config, with the output projection reading
the encoder's word embeddings; so the export is a state-dict copy and a re-tie.
"""

from __future__ import annotations

from typing import Any

import torch

from tunekit.plugin import ExportError, HFExport, encoder_model

from .head import TiedDecoder, _head_child


def masked_lm_export(model: Any) -> HFExport:
    """An :class:`~tunekit.plugin.HFExport` of *model* (encoder + :class:`MaskedLMHead`)."""
    from transformers import AutoModelForMaskedLM

    lm = getattr(model.head, "lm", None)
    if lm is None:
        raise ExportError(
            f"fill-mask: the head {type(model.head).__name__} is not a masked-LM head; nothing to export"
        )
    hf = encoder_model(AutoModelForMaskedLM, model)
    lm_name, target = _head_child(hf, hf.config.model_type)
    tied = any(isinstance(m, TiedDecoder) for m in lm.modules())
    missing, unexpected = target.load_state_dict(lm.state_dict(), strict=False)
    allowed_missing = {k for k in missing if tied and k.endswith("decoder.weight")}
    if unexpected or set(missing) - allowed_missing:
        raise ExportError(
            f"fill-mask: the trained masked-LM head does not fit {type(hf).__name__}.{lm_name}: "
            f"missing {sorted(set(missing) - allowed_missing)[:5]}, unexpected {unexpected[:5]}"
        )
    if tied:
        hf.config.tie_word_embeddings = True
        hf.tie_weights()
        output = hf.get_output_embeddings()
        if (
            output is None
            or output.weight.data_ptr() != hf.get_input_embeddings().weight.data_ptr()
        ):
            raise ExportError(
                f"fill-mask: {type(hf).__name__} did not tie its output projection to the word embeddings"
            )
    hf.eval()

    def check(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        ours = model(batch)  # logits at the mask tokens, with their rows and cols
        theirs = hf(**model.encoder_inputs(batch)).logits
        return ours["logits"].float(), theirs[ours["rows"], ours["cols"]].float()

    return HFExport(
        model=hf,
        pipeline="fill-mask",
        notes=(
            "The pipeline takes one [MASK] per text by default; tunekit also fills several masks per text "
            "(one candidate list per mask), as the pipeline does for texts with several masks."
        ),
        check=check,
    )
