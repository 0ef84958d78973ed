"""How ``fit`` makes the DPA and its plain-L1 reference: one autoencoder per axis on that axis's slice store.

Sizes per preset: ``quick`` a smoke run; ``demo`` the demo's CPU budget (benchmarks/bench_quality.py:
600 steps per axis at C=16 is ~100 s an axis with both cores and pixel AP 0.052 (150 steps: 0.028; 2,400:
0.062); a cosine schedule at twice the rate did worse (0.044); batch 16 at 1,200 steps (same time) 0.054;
two one-thread processes gained 4-24 % over two threads (BENCHMARKS.md)); ``cpu`` / ``long`` the demo's
shapes wider and trained to early stopping; ``seed`` the seed's submitted configs.
"""

from ..registry import Recipe

_CPU = ("optim.max_steps=4800", "optim.val_every=200", "optim.batch_size=32", "model.channels=32", "model.latent=32")

RECIPES = (
    Recipe(
        "dpa", "DPA", "axis_stores", backbone=True,
        configs={"demo": "demo/dpa.yaml", "seed": "{kind}/pixel/axis_{axis}.yaml"},
        overrides={
            "quick": ("model.channels=8", "model.latent=16", "model.size=32", "optim.max_steps=40", "optim.val_every=20",
                      "optim.batch_size=32", "loss.vgg_width=0.125"),
            "demo": ("optim.max_steps=600", "optim.val_every=150", "optim.batch_size=32", "model.latent=32"),
            "cpu": _CPU, "long": _CPU,
        },
        note="one residual autoencoder per axis trained with the relative perceptual L1 on a SimCLR-pretrained VGG19.",
    ),
    Recipe(
        "l1", "L1-AE", "axis_stores", member=False,  # the plain-L1 reference, not a member of the cross-method detector
        configs={"demo": "demo/l1.yaml", "seed": "{kind}/pixel/axis_{axis}.yaml"},
        overrides={
            "quick": ("model.channels=8", "model.latent=16", "model.size=32", "optim.max_steps=40", "optim.val_every=20",
                      "optim.batch_size=32"),
            "demo": ("optim.max_steps=600", "optim.val_every=150", "optim.batch_size=32", "model.latent=32"),
            "cpu": _CPU, "long": _CPU,
            "seed": ("loss.kind=l1", "loss.normaliser=slice"),
        },
        note="the same autoencoders trained with a plain pixel L1 loss; score = |x - reconstruction| (the reference).",
    ),
)
