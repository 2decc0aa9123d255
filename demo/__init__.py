"""``python -m demo``: the whole system with a simulated site (see ``demo.__main__``)."""
