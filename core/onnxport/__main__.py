"""`python -m onnxport` is the `onnxport` command."""

from onnxport.cli import main

raise SystemExit(main())
