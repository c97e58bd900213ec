from salut_tui.cli import main

raise SystemExit(main())
