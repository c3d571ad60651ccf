from speak_encoder.cli import main

__all__: list[str] = []  # run as `python -m speak_encoder`; nothing to import

raise SystemExit(main())
