"""Running the notebooks: paths and profiles (``config``), execution with papermill
(``execute``), process pools (``pools``), metrics, the report, the README block and sweeps."""
