"""Volume-level intensity-histogram detector (sample level only): features and distances in :mod:`.features`,
the detector and its file in :mod:`.model`, the shell's scorer in :mod:`.scorer`. Nothing is imported here, so
the registry can read the method's folder without loading numpy or torch."""
