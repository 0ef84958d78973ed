"""How ``fit`` makes the histogram baseline: fitted on the training volumes, no config, no training loop."""

from ..registry import Recipe

RECIPES = (
    Recipe("histogram", "Histogram baseline", "volumes", fitter="mood_dpa.methods.histogram.model:fit_histogram",
           note="non-learned: rarity of each voxel's intensity under the training intensity histogram, smoothed."),
)
