"""Many captures as one dataset: Parquet files, DuckDB (embedded) by default, Dask when it outgrows one machine.

>>> import nodeflame as nf
>>> ds = nf.dataset("profiles/")               # a directory or an fsspec URL
>>> ds.add(p, labels={"service": "api", "version": "1.3"})
>>> ds.captures()                              # one row per capture
>>> ds.top(by=["version"], where="service = 'api'", n=20)
>>> ds.profile(where="version = '1.3'")        # one merged Profile
>>> ds.trend(func="parse", by="version", every="1h")
>>> ds.sql("select version, sum(samples) from captures group by 1")

Needs ``pip install nodeflame[fleet]`` (pyarrow, duckdb, fsspec; dask[distributed] for the Dask engine).
The layout is described in nodeflame/dataset/store.py and the README.
"""
from __future__ import annotations

import sys

try:
    import pyarrow  # noqa: F401
except ModuleNotFoundError as e:  # pragma: no cover - depends on the install
    from ..frames.errors import NodeflameError
    raise NodeflameError("datasets need pyarrow: pip install 'nodeflame[fleet]'") from e

from .core import Dataset, dataset  # noqa: E402
from .store import SCHEMA_VERSION, DatasetError  # noqa: E402

__all__ = ["Dataset", "dataset", "DatasetError", "SCHEMA_VERSION"]


# ``nodeflame.dataset`` is both this package and the function: once the package is imported,
# the attribute ``nodeflame.dataset`` is this module, so the module is callable.
class _CallableModule(type(sys)):
    def __call__(self, *args, **kwargs):
        return dataset(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
