from drivesim.cli import main

raise SystemExit(main())
