"""`python -m benchmarks [--sizes 3 20 200] [--policy] [--check]`."""

from benchmarks.preview import main

raise SystemExit(main())
