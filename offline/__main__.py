"""`python -m offline preview --stack STACK`."""

from offline.cli import main

raise SystemExit(main())
