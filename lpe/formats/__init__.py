"""Number formats: precision names (no torch), INT-b and the registered low precision formats,
their rounding kernels, code packing, and which tensors a model quantizes. Imports lpe.core.
"""
