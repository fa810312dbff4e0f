"""Readers of every input format; importing this package registers them."""
import importlib

for _name in ("folded", "raw", "perf", "chrometrace", "cpuprofile", "speedscope", "pprof", "nfprof"):
    importlib.import_module(f"{__name__}.{_name}")
