"""Design-space sweeps (``pqtwin sweep``): a sweep file (spec), its validated points (plan), one point on a
worker (point), the Dask engine (engine), the Parquet result set (store) and its analysis (analysis)."""
