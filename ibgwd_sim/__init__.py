"""Simulated IBC + IB Gateway for tests and the demo; production code never imports it."""
