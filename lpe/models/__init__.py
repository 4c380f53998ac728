"""Models and their checkpoints: the mini ViTs and timm models, CLIP zero-shot heads, the
checkpoint file format. Imports lpe.core.
"""
