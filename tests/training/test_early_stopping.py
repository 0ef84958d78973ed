"""The seed's early stopping and best checkpoint, on scripted validation losses."""

from __future__ import annotations

import math

import pytest
import torch

from mood_dpa.training.runner import SeedEarlyStop, _seed_stopping_callback

#: val_every 10, patience 2, min_delta 0.1. 0.95 is not an improvement on 1.0 (by 0.05 only);
#: 0.85 is (by 0.15): best step 30. Then 0.80, 0.79, 0.78 improve on 0.85 by less than 0.1 each.
SCRIPT = [1.0, 0.95, 0.85, 0.80, 0.79, 0.78, 0.5, 0.4]


def test_seed_rule_on_a_scripted_sequence():
    rule = SeedEarlyStop(min_delta=0.1, patience=2, val_every=10)
    seen = [(step, *rule.update(step, loss)) for step, loss in zip(range(10, 70, 10), SCRIPT)]
    assert seen == [(10, True, False), (20, False, False), (30, True, False), (40, False, False),
                        (50, False, False), (60, False, True)]  # (60 - 30) / 10 = 3 > 2; Lightning stops at 50
    assert rule.best_step == 30 and rule.best_loss == 0.85  # not 0.78: it improved by less than min_delta
    # state survives a resume
    again = SeedEarlyStop(0.1, 2, 10)
    again.load_state_dict(rule.state_dict())
    assert (again.best_step, again.best_loss) == (30, 0.85)
    # patience 0: the first validation without improvement stops; a non-finite loss stops at once
    strict = SeedEarlyStop(0.0, 0, 5)
    assert strict.update(5, 1.0) == (True, False) and strict.update(10, 1.0) == (False, True)
    assert SeedEarlyStop(0.0, 3, 5).update(5, math.nan) == (False, True)
    # with min_delta 0 any decrease improves
    loose = SeedEarlyStop(0.0, 1, 1)
    assert [loose.update(i, v)[0] for i, v in enumerate([3.0, 2.0, 2.0, 1.9], 1)] == [True, True, False, True]


@pytest.mark.filterwarnings("ignore:.*LeafSpec.*")
def test_lightning_run_stops_and_keeps_the_seed_checkpoint(tmp_path, one_torch_thread):
    import lightning as L

    class Scripted(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Linear(2, 1)
            self.n_val = 0

        def training_step(self, batch, _):
            return self.w(batch[0]).pow(2).mean()

        def validation_step(self, batch, _):
            pass

        def on_validation_epoch_end(self):
            self.log("val_loss", SCRIPT[min(self.n_val, len(SCRIPT) - 1)])
            self.n_val += 1

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(400, 2)), batch_size=4)
    val = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(4, 2)), batch_size=4)
    best = tmp_path / "best.ckpt"
    stop = _seed_stopping_callback(SeedEarlyStop(0.1, 2, 10), best)
    trainer = L.Trainer(max_steps=200, val_check_interval=10, check_val_every_n_epoch=None, callbacks=[stop],
                        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, accelerator="cpu", default_root_dir=tmp_path)
    trainer.fit(Scripted(), data, val)
    assert trainer.global_step == 60
    assert torch.load(best, weights_only=False)["global_step"] == 30
    assert stop.best_model_score == pytest.approx(0.85) and stop.best_model_path == str(best)
