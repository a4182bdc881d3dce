"""`python -m onnxport` is the `onnxport` command."""

from .cli import main

raise SystemExit(main())
