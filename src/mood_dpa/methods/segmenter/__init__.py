"""The self-supervised synthetic-anomaly segmenter: a U-Net trained on normal data to find anomalies
that it synthesises itself (FPI, Poisson blending, intensity/texture changes), 2-D per axis or 3-D on patches."""
