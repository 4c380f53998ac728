"""Where examples come from: the seeded MNIST-1D splits (mini) and image folders (paper profile).
Imports lpe.core and lpe.models.
"""
