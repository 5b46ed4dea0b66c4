"""Child components as systemd transient units: pure specs, their D-Bus properties, the client."""
