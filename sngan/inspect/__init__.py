"""`sngan inspect`: how well spectral normalization holds in a trained discriminator (spectra, bounds, plots)."""
