"""The Deep Perceptual Autoencoder: ``model`` (DPAModel + its file), ``lightning`` (training module),
``config``, ``train`` (through the shared runner) and ``scorer`` (model -> the shell's slice scorer).
The plain-L1 reference autoencoder is the same method with ``loss.kind: l1``."""
