"""Model and experiment configs (YAML), shipped with the package so that an installed ``sgv`` finds them."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def config_path(*parts: str) -> Path:
    """The shipped config file or folder ``parts`` (``config_path("experiment", "albef.yaml")``)."""
    return Path(str(resources.files(__name__).joinpath(*parts)))
