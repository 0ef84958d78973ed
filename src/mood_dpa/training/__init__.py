"""Training: configs (``config``), SimCLR views (``augment``), data modules (``data``), Lightning modules
(``simclr``, ``dpa``) and the entry points ``runner.train_dpa(cfg)`` / ``runner.pretrain_simclr(cfg)``."""
