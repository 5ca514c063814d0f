from veritta_verify.cli import main

raise SystemExit(main())
