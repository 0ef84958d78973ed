"""The intensity-histogram baseline: ``model`` (density, fit, file) and ``scorer`` (raw rarity map)."""
