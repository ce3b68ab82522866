"""Bank anti-fraud on Flower, with secagg as the secure aggregation (see ../README.md)."""
