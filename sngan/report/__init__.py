"""`sngan report`: a run's curves and newest samples in one PNG (`page`), drawn with small charts (`charts`)."""
