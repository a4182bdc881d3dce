"""`python -m onnxport.bench`: the child process that measures one case (see
`onnxport.bench.run_bench`), so every row starts from a fresh process."""

import sys

from onnxport.bench import child_main

sys.exit(child_main())
