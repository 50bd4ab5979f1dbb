"""Load a script of the repository (lim_selection.py, eval/*.py, train/*.py: files, not package modules) by path."""

import importlib.util
import sys
from pathlib import Path


def load_script(name: str, path: Path):
    """The module at `path`, registered as sys.modules[name] (dataclasses and pickling look it up there)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
