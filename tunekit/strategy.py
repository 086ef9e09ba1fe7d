"""The :class:`Strategy` interface: which parameters learn, and what a bundle stores.

A strategy never knows the task: it sees a :class:`~tunekit.taskmodel.TaskModel`
(encoder + representation + head) and decides what trains. ``apply`` must be
deterministic, because ``tunekit.load()`` calls it again to rebuild the same structure
before loading the saved weights.
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import nn

from .task import NoOptions
from .taskmodel import TaskModel

NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")


class Strategy:
    """Base class of fine-tuning strategies.

    Class attributes: ``name``, ``aliases``, ``Config`` (frozen attrs class of options
    that ``finetune()`` routes here), ``description``.
    """

    name: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = ""
    Config: ClassVar[type] = NoOptions

    def __init__(self, config: Any = None) -> None:
        self.config = config if config is not None else self.Config()

    def apply(self, model: TaskModel) -> None:
        """Set ``requires_grad`` / wrap modules of *model* in place."""
        raise NotImplementedError

    def parameter_groups(
        self, model: nn.Module, *, learning_rate: float, weight_decay: float
    ) -> list[dict[str, Any]]:
        """Optimizer parameter groups; by default no weight decay on biases and norms."""
        decay: list[nn.Parameter] = []
        no_decay: list[nn.Parameter] = []
        for name, param in model.named_parameters():
            if not param.requires_grad:
                continue
            (no_decay if name.endswith(NO_DECAY) else decay).append(param)
        groups = [
            {"params": decay, "weight_decay": weight_decay, "lr": learning_rate},
            {"params": no_decay, "weight_decay": 0.0, "lr": learning_rate},
        ]
        return [g for g in groups if g["params"]]

    def resume_blocker(self) -> str | None:
        """Why a checkpoint of this strategy cannot be resumed exactly (state the
        checkpoint does not hold), or ``None`` when it can. The trainer refuses
        ``resume=True`` with this reason rather than continue a different run."""
        return None

    @property
    def stores_encoder(self) -> bool:
        """Whether bundles store the whole encoder (else only the trained parameters, plus
        the base model's identity and weight hash, and load re-attaches to the base)."""
        return True

    def saved_state(self, model: TaskModel) -> dict[str, Any]:
        """The tensors a bundle stores for *model*."""
        state = model.state_dict()
        if self.stores_encoder:
            return state
        trained = {name for name, p in model.named_parameters() if p.requires_grad}
        return {k: v for k, v in state.items() if k in trained or not k.startswith("encoder.")}

    def prepare_for_save(self, model: TaskModel) -> None:
        """Hook before a bundle is written (e.g. to check a merge)."""

    @property
    def cache_features(self) -> bool:
        """Whether the encoder is frozen so that its outputs may be computed once and reused."""
        return False

    @property
    def cache_dir(self) -> str | None:
        """Directory of the on-disk feature cache (``None``: cache in memory only)."""
        return None

    def on_train_begin(self, model: nn.Module, *, total_steps: int) -> None:
        """Called by the trainer once before the first step (e.g. to size a schedule)."""

    def after_optimizer_step(self, model: nn.Module, *, global_step: int) -> None:
        """Called by the trainer after each optimizer step, before gradients are cleared."""

    def merged_model(self, model: TaskModel) -> TaskModel:
        """*model* with anything the strategy wrapped folded into plain encoder weights, for a
        standalone bundle (``run.save(dir, merged=True)``). Strategies that do not wrap the
        encoder return *model* itself; adapter strategies merge and verify, or refuse."""
        return model

    def standalone(self) -> Strategy:
        """The strategy that rebuilds a merged, standalone bundle's model (``self`` unless the
        strategy wraps the encoder)."""
        return self
