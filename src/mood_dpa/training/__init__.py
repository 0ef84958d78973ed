"""Training shared by every method: configs (``config``: data, trainer, SimCLR), SimCLR views
(``augment``), slice data modules (``data``), SimCLR's Lightning module (``simclr``: it pre-trains the
perceptual backbone, it is not a detector) and the ONE runner (``runner.run_training``,
``runner.pretrain_simclr``). Each method's own modules live in :mod:`mood_dpa.methods`."""
