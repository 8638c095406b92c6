from aiclient.cli import main

raise SystemExit(main())
