"""Supervision: the pure health state machine and the loop that carries out its decisions."""
