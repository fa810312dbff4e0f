"""Output formats; importing this package registers them with nodeflame.frames.formats."""
import importlib

for _name in ("text", "folded", "raw", "svg", "cpuprofile", "speedscope", "pprof", "diff", "nfprof", "ipynb"):
    try:
        importlib.import_module(f"{__name__}.{_name}")
    except ModuleNotFoundError as _e:  # a writer not written yet
        if _e.name != f"{__name__}.{_name}":
            raise
