"""Experiments: sweeps (a grid of `lionfer train` runs from one TOML file), their launchers (local
subprocesses or submitit jobs on Slurm), and `make demo`, the baselines and LION's recipes side by
side.
"""
