"""The member sources: the registry of every way the suite gets ensemble members (no torch),
and each method's own mathematics (SWAG, IVON's posterior, cSGLD, cyclic schedules,
BatchEnsemble). Imports the layers below it.
"""
