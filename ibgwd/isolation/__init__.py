"""Local isolation: what keeps other local users (and other instances) away from an instance's
X display, IBC command server, Gateway API port and secrets. Threat model: docs/security.md."""
