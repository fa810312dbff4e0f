"""Output formats; importing this package registers them with nodeflame.frames.formats."""
import importlib

for _name in ("text", "folded", "raw", "svg", "cpuprofile", "speedscope", "pprof", "diff", "nfprof", "ipynb"):
    importlib.import_module(f"{__name__}.{_name}")
