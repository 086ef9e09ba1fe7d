"""Token-level heads: a softmax token classifier and a CRF on top of it.

Both read ``[batch, tokens, hidden]`` and return per-token ``logits``. The CRF head also
returns ``nll`` (per-sequence negative log-likelihood, when the batch has ``labels``) and,
outside training, the Viterbi ``tags`` (``-1`` where a position is not scored). The CRF
runs over the *scored* positions only (``word_starts == 1``: the first subword of each
word), so its transitions are word-to-word, and its decoding is constrained to the tag
scheme's allowed transitions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from tunekit.plugin import ACTIVATIONS, Head

#: added to the score of a forbidden transition / start / end (finite, so sums stay finite)
FORBIDDEN = -1e4


class TokenClassifierHead(Head):
    """Dropout → (hidden layers →) linear, applied to every token: ``logits [B, T, labels]``.

    Example::

        head = TokenClassifierHead(384, 9)
        head(torch.randn(2, 7, 384), {})["logits"].shape  # torch.Size([2, 7, 9])
    """

    name = "token-softmax"
    level = "token"
    aliases = ("softmax", "token-linear")

    def __init__(
        self,
        in_features: int,
        num_labels: int,
        *,
        hidden: Sequence[int] = (),
        dropout: float = 0.1,
        activation: str = "gelu",
        **_: object,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Dropout(dropout)]
        width = in_features
        for size in hidden:
            layers += [nn.Linear(width, size), ACTIVATIONS[activation](), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, num_labels))
        self.net = nn.Sequential(*layers)

    def forward(
        self, hidden: torch.Tensor, batch: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        return {"logits": self.net(hidden)}


def _compact(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions of the ``True`` entries of each row, moved to the left.

    Returns ``index [B, W]`` (a position per slot) and ``valid [B, W]``; rows with no
    ``True`` entry get one (invalid-for-loss) slot at position 0 so the CRF has a first step.
    """
    batch, length = mask.shape
    positions = torch.arange(length, device=mask.device).expand(batch, length)
    keyed = torch.where(mask, positions, positions + length)  # scored positions sort first
    order = keyed.argsort(dim=1)
    counts = mask.sum(1)
    width = max(int(counts.max()) if batch else 0, 1)
    index = order[:, :width]
    valid = torch.arange(width, device=mask.device).unsqueeze(0) < counts.unsqueeze(1)
    valid[:, 0] = True  # torchcrf needs every sequence to start on
    return index, valid


def _crf_class() -> type:
    from torchcrf import CRF

    class DecodingCRF(CRF):
        """``pytorch-crf``'s CRF whose ``forward`` without tags is Viterbi ``decode`` (so
        ``torch.func.functional_call`` can run both with the constrained transitions)."""

        def forward(self, emissions, tags=None, mask=None, reduction="sum"):  # type: ignore[override]
            if tags is None:
                return self.decode(emissions, mask)
            return super().forward(emissions, tags, mask=mask, reduction=reduction)

    return DecodingCRF


class CRFHead(TokenClassifierHead):
    """Token classifier + linear-chain CRF (``pytorch-crf``) with constrained Viterbi decoding.

    *allowed*, *allowed_start*, *allowed_end* (lists of booleans over the labels, from
    :func:`tunekit_tagging.schemes.allowed_transitions`) forbid transitions that are invalid
    in the tag scheme (``O → I-PER`` in IOB2...), in training and decoding alike, so the
    decoded path is always well formed. Start/end constraints apply to windows that begin /
    end a sentence (``sentence_start`` / ``sentence_end`` in the batch).

    Example::

        head = CRFHead(384, 3, allowed=[[True, True, False], [True, True, True], [True, True, True]])
        out = head.eval()(torch.randn(1, 4, 384), {"word_starts": torch.ones(1, 4)})
        out["tags"]  # tensor([[...]]): a Viterbi path that never has O → I
    """

    name = "crf"
    aliases = ("token-crf",)

    def __init__(
        self,
        in_features: int,
        num_labels: int,
        *,
        allowed: Sequence[Sequence[bool]] | None = None,
        allowed_start: Sequence[bool] | None = None,
        allowed_end: Sequence[bool] | None = None,
        **options: object,
    ) -> None:
        super().__init__(in_features, num_labels, **options)
        self.crf = _crf_class()(num_labels, batch_first=True)
        full = [[True] * num_labels for _ in range(num_labels)]
        self.register_buffer(
            "allowed", torch.tensor(allowed if allowed is not None else full), persistent=False
        )
        self.register_buffer(
            "allowed_start",
            torch.tensor(allowed_start if allowed_start is not None else [True] * num_labels),
            persistent=False,
        )
        self.register_buffer(
            "allowed_end",
            torch.tensor(allowed_end if allowed_end is not None else [True] * num_labels),
            persistent=False,
        )

    def _constrained(self) -> dict[str, torch.Tensor]:
        # start/end are constrained per window in the emissions; transitions here
        return {
            "transitions": self.crf.transitions.masked_fill(~self.allowed, FORBIDDEN),
            "start_transitions": self.crf.start_transitions,
            "end_transitions": self.crf.end_transitions,
        }

    def forward(
        self, hidden: torch.Tensor, batch: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        logits = self.net(hidden)
        starts = batch.get("word_starts")
        mask = (
            starts == 1
            if starts is not None
            else torch.ones(logits.shape[:2], dtype=torch.bool, device=logits.device)
        )
        mask = mask[:, : logits.shape[1]]
        index, valid = _compact(mask)
        emissions = logits.float().gather(1, index.unsqueeze(-1).expand(-1, -1, logits.shape[-1]))
        emissions = self._edge_constraints(emissions, valid, batch)
        params = self._constrained()
        out: dict[str, torch.Tensor] = {"logits": logits}
        labels = batch.get("labels")
        if labels is not None:
            gold = labels.gather(1, index).clamp(min=0)  # -100 only at invalid slots / empty rows
            nll = -torch.func.functional_call(
                self.crf, params, (emissions, gold), {"mask": valid, "reduction": "none"}
            )
            out["nll"] = nll
        # an ONNX export traces the emissions only; Viterbi runs after the graph in numpy
        # (tunekit.onnx_postprocess.crf_viterbi_tags, fed by TaggingTask.export_postprocess)
        if not self.training and not torch.jit.is_tracing():
            paths = torch.func.functional_call(self.crf, params, (emissions,), {"mask": valid})
            out["tags"] = self._scatter(paths, index, mask, logits.shape[1])
        return out

    def decoding_arrays(self) -> dict[str, list]:
        """What Viterbi decoding needs outside the module (an ONNX export's post-processing):
        the constrained ``transitions``, ``start_transitions``, ``end_transitions`` and the
        scheme's ``allowed_start`` / ``allowed_end``."""
        params = {k: v.detach().float().cpu().tolist() for k, v in self._constrained().items()}
        params["allowed_start"] = self.allowed_start.cpu().tolist()
        params["allowed_end"] = self.allowed_end.cpu().tolist()
        return params

    def _edge_constraints(
        self, emissions: torch.Tensor, valid: torch.Tensor, batch: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        penalty_start = (~self.allowed_start).float() * FORBIDDEN
        penalty_end = (~self.allowed_end).float() * FORBIDDEN
        first = batch.get("sentence_start")
        last = batch.get("sentence_end")
        emissions = emissions.clone()
        if first is not None:
            emissions[:, 0] += first.view(-1, 1).float() * penalty_start
        if last is not None:
            ends = valid.sum(1) - 1
            rows = torch.arange(emissions.shape[0], device=emissions.device)
            emissions[rows, ends] += last.view(-1, 1).float() * penalty_end
        return emissions

    @staticmethod
    def _scatter(
        paths: list[list[int]], index: torch.Tensor, mask: torch.Tensor, length: int
    ) -> torch.Tensor:
        tags = torch.full((len(paths), length), -1, dtype=torch.long, device=index.device)
        for row, path in enumerate(paths):
            n = int(mask[row].sum())
            if n:
                tags[row, index[row, :n]] = torch.tensor(
                    path[:n], dtype=torch.long, device=index.device
                )
        return tags
