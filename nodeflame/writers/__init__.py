"""Output formats, registered with nodeflame.frames.formats when this package is imported.

Each format's module is imported on its first write, not here: converting to SVG or folded stacks
loads neither pandas nor the other writers.  This table is where a format's name, extensions and
function are declared (its module registers nothing itself).
"""
import importlib

from ..frames.formats import register_diff_writer, register_writer

# name, module, function, extensions, binary -- in this order (an extension two formats claim
# goes to the first, unless the other's is longer)
FORMATS = (
    ("text", "text", "write_text", (".txt", ".text"), False),
    ("folded", "folded", "write_folded", (".folded", ".collapsed"), False),
    ("raw", "raw", "write_raw", (".raw", ".stacks"), False),
    ("svg", "svg", "write", (".svg",), False),
    ("cpuprofile", "cpuprofile", "write_cpuprofile", (".cpuprofile",), False),
    ("speedscope", "speedscope", "write_speedscope", (".speedscope.json", ".speedscope"), False),
    ("pprof", "pprof", "write_pprof", (".pb.gz", ".pprof", ".prof", ".pb"), True),
    ("nfprof", "nfprof", "write_nfprof", (".nfprof",), True),
    ("ipynb", "ipynb", "write_ipynb", (".ipynb",), False),
)
DIFF_FORMATS = (
    ("folded", "diff", "write_diff_folded", (".folded", ".collapsed"), False),
    ("svg", "diff", "write_diff_svg", (".svg",), False),
)


def _lazy(module: str, func: str):
    """``module.func``, imported when first called."""
    def write(*args, **options):
        return getattr(importlib.import_module(f"{__name__}.{module}"), func)(*args, **options)
    write.__name__ = write.__qualname__ = func
    write.__doc__ = f"nodeflame.writers.{module}.{func} (imported on first use)"
    return write


for _name, _module, _func, _ext, _binary in FORMATS:
    register_writer(_name, _lazy(_module, _func), _ext, binary=_binary)
for _name, _module, _func, _ext, _binary in DIFF_FORMATS:
    register_diff_writer(_name, _lazy(_module, _func), _ext, binary=_binary)
