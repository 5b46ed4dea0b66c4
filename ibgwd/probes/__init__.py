"""Health probes: the TWS API handshake, the full API check, and display readiness."""
