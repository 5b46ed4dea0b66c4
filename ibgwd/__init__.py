"""ibgwd: run Interactive Brokers Gateway unattended under systemd."""

__version__ = "0.1.0"
