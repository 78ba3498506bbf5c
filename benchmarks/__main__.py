"""`python -m benchmarks [--sizes 3 20 100 200 1000] [--policy] [--check] [--blast N]`."""

from benchmarks.scale import main

raise SystemExit(main())
