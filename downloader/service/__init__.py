"""The long-running service (``recall-dl run``): HTTP receiver, sweeps, metrics, sd_notify."""
