"""Commands for users beside the workflow: apply LPE to your own model, compare a regeneration
with the reference, the numerics fingerprint, the config check.
"""
