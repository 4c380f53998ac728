"""Ensemble members as files: low precision member sets drawn from a checkpoint, their files,
and the shared-base ensemble file. Imports lpe.core, lpe.formats and lpe.models.
"""
