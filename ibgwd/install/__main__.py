"""`python3 -m ibgwd.install ARGS`: the same as `ibgwd install-gateway ARGS`."""

from ibgwd.install import main

raise SystemExit(main())
