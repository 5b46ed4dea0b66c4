"""`python -m ibgwd` entry point."""

from ibgwd.cli import main

raise SystemExit(main())
