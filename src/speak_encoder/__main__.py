from speak_encoder.cli import main

raise SystemExit(main())
