"""The runner: parameters, papermill runs and their records, grids, the `pxr` command."""
