"""`sngan study`: a grid of runs (methods x settings x seeds), its table and figures."""
