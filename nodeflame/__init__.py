"""nodeflame: profile running Node.js processes into pandas tables and flame graphs.

>>> import nodeflame as nf
>>> p = nf.read("app.cpuprofile")      # any supported format, sniffed
>>> p.top(20); p.write("flame.svg"); print(p.text())
"""
from .frames import (FormatError, FormatWarning, InvariantError, NodeflameError, Profile, Transform,
                     TransformError, read)
from . import writers as _writers  # noqa: F401  (registers the output formats)
from .frames.formats import register_lazy as _register_lazy
from .frames.diff import Diff, diff

_register_lazy("widgets", lambda: __import__("nodeflame.widgets", fromlist=["_"]))

__version__ = "0.1.0"

__all__ = ["read", "diff", "Diff", "Profile", "Transform", "NodeflameError", "FormatError", "FormatWarning",
           "InvariantError", "TransformError", "__version__"]


def __getattr__(name):
    # capture and diff are imported on first use so that `import nodeflame` stays light
    if name in ("capture", "run", "backends"):
        import importlib  # not `from . import capture`: that asks this __getattr__ again, forever
        _capture = importlib.import_module(".capture", __name__)
        return getattr(_capture, name)
    if name == "dataset":  # nodeflame[fleet]: pyarrow, duckdb (and dask) load only here
        import importlib
        return importlib.import_module(".dataset", __name__)  # a callable module: nf.dataset(PATH)
    raise AttributeError(f"module 'nodeflame' has no attribute {name!r}")


def load_ipython_extension(ip):
    """``%load_ext nodeflame``: registers the ``%nodeflame`` magic (see nodeflame.magic)."""
    from .magic import load_ipython_extension as _load
    _load(ip)
