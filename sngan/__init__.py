"""sngan: Spectrally Normalized GANs (Miyato et al., ICLR 2018) and projection cGANs, trained reproducibly."""

__version__ = "0.1.0"
