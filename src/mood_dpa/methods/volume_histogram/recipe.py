"""How ``fit`` makes the volume-histogram detector: fitted on the training volumes; a SAMPLE-LEVEL member of the
cross-method detector (no voxel map: it joins the sample score as the tuning set chooses)."""

from ..registry import Recipe

RECIPES = (
    Recipe("volume-histogram", "Volume histogram", "volumes", fitter="mood_dpa.methods.volume_histogram.model:fit_volume_histogram",
           note="non-learned, sample level: how far a volume's intensity histogram and statistics are from its nearest "
                "training volumes."),
)
