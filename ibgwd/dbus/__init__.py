"""The D-Bus control surface: error mapping, authorization, the Manager interface, publishing."""
