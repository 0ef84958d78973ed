"""The Python packages of the submission image: what inference imports, at the host's versions.

The image must hold nothing that only training needs (the seed's image carried lightning, kornia,
matplotlib and tensorboard), and it should compute what the host computes: ``requirements.txt`` names
the packages the prediction path imports, ``constraints.txt`` pins every package they pull in to the
version installed where ``mood-dpa submission`` runs (local labels such as ``+cpu`` dropped, so the
image's torch build is chosen by the Dockerfile's TORCH argument). Packages not installed here keep
the range ``mood-dpa`` itself declares.
"""

from __future__ import annotations

import re
from importlib import metadata

#: What ``predict`` imports (tests/test_image_requirements.py checks this against a real prediction).
RUNTIME_PACKAGES = ("torch", "numpy", "scipy", "nibabel", "pydantic", "pyyaml", "typer", "rich", "monai")


def canonical(name: str) -> str:
    """PEP 503 name: lower case, runs of ``-_.`` as one ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def public_version(version: str) -> str:
    """``2.13.0+cpu`` -> ``2.13.0``."""
    return version.split("+", 1)[0]


def _installed(name: str) -> metadata.Distribution | None:
    try:
        return metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return None


def _requirements_of(dist: metadata.Distribution) -> list[str]:
    """Names ``dist`` needs here (extras and requirements whose markers do not hold are left out)."""
    # packaging is pip's, not a declared dependency: imported only where an image is built
    from packaging.requirements import InvalidRequirement, Requirement

    names = []
    for text in dist.requires or []:
        try:
            req = Requirement(text)
        except InvalidRequirement:
            continue
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        names.append(canonical(req.name))
    return names


def declared_ranges() -> dict[str, str]:
    """The requirement ``mood-dpa`` declares for each runtime package (``numpy>=1.24`` ...), where installed."""
    dist = _installed("mood-dpa")
    ranges = {}
    for text in (dist.requires or []) if dist is not None else []:
        match = re.match(r"^\s*([A-Za-z0-9._-]+)", text)
        if match and canonical(match.group(1)) in RUNTIME_PACKAGES and ";" not in text:
            ranges[canonical(match.group(1))] = text.strip()
    return ranges


def runtime_requirements() -> list[str]:
    """requirements.txt lines: each runtime package at the host's version, else at mood-dpa's range."""
    ranges = declared_ranges()
    lines = []
    for name in RUNTIME_PACKAGES:
        dist = _installed(name)
        lines.append(f"{name}=={public_version(dist.version)}" if dist is not None else ranges.get(name, name))
    return lines


def pinned_closure() -> list[str]:
    """constraints.txt lines: every installed package the runtime packages need, directly or not, pinned."""
    seen: dict[str, str] = {}
    todo = list(RUNTIME_PACKAGES)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        dist = _installed(name)
        if dist is None:
            continue
        seen[name] = public_version(dist.version)
        todo.extend(_requirements_of(dist))
    return [f"{name}=={version}" for name, version in sorted(seen.items())]
