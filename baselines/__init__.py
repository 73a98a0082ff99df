"""Baselines run beside WS-FM: diffusion (DDPM, DDIM) and the draft alone.

Full flow matching is not here: it is the wsfm mechanism with t0 = 0 and a noise source
(wsfm.methods).
"""
