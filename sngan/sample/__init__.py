"""Sampling: seeded latents -> generator -> images -> files.

- `generate`: latents, batched generation in eval mode, and the generator stored in a checkpoint.
- `interpolation`: slerp/lerp latent paths and class-weight paths (maths only).
- `writers`: PNG grids and strips, GIFs, PNG folders, npz (all atomic and byte-deterministic).
- `command`: `sngan sample` as a plain function (`export`).
"""
