"""Entry point of the ``tunekit-pair`` plugin: registers ``pair-sim``, ``pair-cls`` and ``sts``."""

import tunekit

from .tasks import PairClassifyTask, PairSimTask, StsTask


@tunekit.hookimpl
def tunekit_register_tasks(register):
    register(PairSimTask)
    register(PairClassifyTask)
    register(StsTask)
