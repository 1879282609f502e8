"""Benchmark of the transfer engine against curl and aria2c on loopback nginx."""
