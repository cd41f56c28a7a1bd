"""Diffusion from scratch: ``schedule`` (forward process, targets, loss), ``samplers`` (DDPM, DDIM,
classifier-free guidance), ``toy`` (a 2-D world to watch it all work)."""
