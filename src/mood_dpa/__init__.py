"""mood-dpa: unsupervised anomaly detection in 3-D medical volumes (Deep Perceptual Autoencoder)."""

__version__ = "0.1.0"
