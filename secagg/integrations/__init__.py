"""Adapters that run secagg inside other federated-learning frameworks.

Each integration lives in its own subpackage and imports its framework only when that subpackage
is imported, so ``import secagg`` never needs them (``secagg.integrations.flower`` needs the
``secagg[flower]`` extra).
"""
