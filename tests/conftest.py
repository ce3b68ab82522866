import os

from hypothesis import HealthCheck, settings

# The default profile is derandomized: every run of `make test` tries the same examples, so a red
# run is reproducible and never a coin toss. The exploring profiles draw fresh examples each run
# (HYPOTHESIS_PROFILE=explore or thorough); whatever they find belongs in a test as an @example.
# galois JIT-compiles its kernels on first use, so the first example of a test can be slow: no deadline.
_COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("ci", max_examples=40, derandomize=True, database=None, **_COMMON)
settings.register_profile("explore", max_examples=40, **_COMMON)
settings.register_profile("thorough", max_examples=1000, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
