"""``fit_state.json``: what a ``fit`` was started with (options and a fingerprint of every training volume)
and which stages have finished, so that a rerun after a kill skips them.

Why a fingerprint: a rerun over other scans saved under the same names would otherwise skip every stage
and keep the old detector (a silent wrong result); the sha256 of each volume makes it a clear refusal.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from ..atomic import write_text
from ..errors import MoodError
from ..ownership import file_sha256

STATE_FILE = "fit_state.json"


def fingerprint(paths: Sequence[Path]) -> dict[str, str]:
    """File name -> sha256 of its content, for every training volume."""
    return {p.name: file_sha256(p) for p in paths}


class FitState:
    """``fit_state.json``: the options of the run and every finished stage (written atomically)."""

    def __init__(self, out: Path, options: dict[str, Any]):
        self.path = out / STATE_FILE
        self.options = options
        self.stages: dict[str, Any] = {}
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text())
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                raise MoodError(f"{self.path}: unreadable fit state ({exc}); choose another output folder") from None
            before = data.get("options", {}) if isinstance(data, dict) else {}
            if before != options:
                raise MoodError(self._difference(out, before))
            self.stages = dict(data.get("stages", {}))
        self._save()

    def _difference(self, out: Path, before: dict) -> str:
        now = self.options
        old_volumes, new_volumes = before.get("volumes", {}), now.get("volumes", {})
        if isinstance(old_volumes, dict) and isinstance(new_volumes, dict) and old_volumes != new_volumes:
            changed = sorted(n for n in set(old_volumes) | set(new_volumes) if old_volumes.get(n) != new_volumes.get(n))
            shown = ", ".join(changed[:3]) + (", ..." if len(changed) > 3 else "")
            return (f"{out}: the training volumes changed since this fit started ({len(changed)}: {shown}); its models "
                    "were trained on the old ones: choose another -o (or restore the volumes to continue)")
        diff = sorted(k for k in set(now) | set(before) if now.get(k) != before.get(k))
        return (f"{out}: an earlier fit with other options ({', '.join(diff)}) is here; "
                "rerun it with the same options to continue, or choose another -o")

    def _save(self) -> None:
        write_text(self.path, json.dumps({"options": self.options, "stages": self.stages}, indent=1))

    def done(self, name: str) -> bool:
        return name in self.stages

    def result(self, name: str) -> Any:
        return self.stages[name]["result"]

    def finish(self, name: str, result: Any, seconds: float) -> None:
        self.stages[name] = {"result": result, "seconds": round(seconds, 2)}
        self._save()


class Stages:
    """Runs named stages once: a finished stage is skipped on a rerun and its recorded result returned."""

    def __init__(self, state: FitState, log: Callable[[str], None]):
        self.state, self.log = state, log
        self.timings: dict[str, float] = {}

    def __call__(self, name: str, fn: Callable[[], Any]) -> Any:
        if self.state.done(name):
            self.log(f"  {name}: done earlier, skipped")
            return self.state.result(name)
        self.log(f"  {name} ...")
        start = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - start
        self.state.finish(name, result, seconds)
        self.timings[name] = seconds
        self.log(f"  {name}: {seconds:.1f} s")
        return result
