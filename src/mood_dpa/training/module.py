"""The base of every Lightning module the runner trains: built from its method's config dict.

Why: the config is saved as the checkpoint's hyperparameters, so a checkpoint (``--resume``, the best
one the runner exports) reopens with exactly the config it was trained with; ``self.cfg`` is that dict
validated by the method's own config class.
"""

from __future__ import annotations

from typing import Any, ClassVar

import lightning as L


class ConfigModule(L.LightningModule):
    """``config_class``: the method's pydantic config class; ``self.cfg``: the validated config."""

    config_class: ClassVar[type]

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.save_hyperparameters({"config": config})
        self.cfg = self.config_class.model_validate(config)
