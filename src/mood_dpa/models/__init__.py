"""Shared building blocks of the learned methods: the residual autoencoder (``autoencoder``), the relative
perceptual L1 and pixel-L1 losses (``perceptual``), SimCLR's NT-Xent and network (``ntxent``) and the
perceptual backbones (``backbones``: a name -> module registry, VGG19 today)."""
