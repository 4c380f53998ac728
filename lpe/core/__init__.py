"""Generic foundations: artifact files and atomic writes, metrics, noise bands, the CPU numerics
pin, threads, resumable runs. Imports nothing else of lpe.
"""
