"""Readers of every input format; importing this package registers them."""
import importlib

for _name in ("folded", "raw", "perf", "cpuprofile", "speedscope", "pprof", "nfprof"):
    try:
        importlib.import_module(f"{__name__}.{_name}")
    except ModuleNotFoundError as _e:  # a reader not written yet
        if _e.name != f"{__name__}.{_name}":
            raise
