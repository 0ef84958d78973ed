"""DPA models: VGG19 features (``vgg``), the residual autoencoder (``autoencoder``), the relative
perceptual L1 and pixel-L1 losses (``perceptual``), SimCLR's NT-Xent and network (``ntxent``) and the
self-contained model file with :class:`~mood_dpa.models.model_file.DPAModel` (``model_file``)."""
