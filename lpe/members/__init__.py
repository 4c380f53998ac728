"""Ensemble members as files: low precision member sets drawn from a checkpoint, their files,
and the shared-base container. Imports lpe.core, lpe.formats and lpe.models.
"""
