"""`onnxport verify`: an artifact's files against its manifests, then its numerics
against a source the user names."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from onnxport.errors import ExitCode
from onnxport.records import Command


def configure(p) -> None:
    p.add_argument("artifact", type=Path, metavar="DIR")
    p.add_argument("--source", metavar="SOURCE",
                   help="the source to compare with: a factory or a model file (without "
                   "it, only the files are checked)")
    p.add_argument("--weights", type=Path, metavar="FILE", help="weights for the source")
    p.add_argument("--trust-code", action="store_true",
                   help="run the source the manifest names (and load a source that "
                   "executes code from its file, as convert --trust-code did); only for "
                   "artifacts you made yourself or fully trust")
    p.add_argument("--json", action="store_true", help="print JSON")


def run(args) -> int:
    from onnxport.api import verify
    from onnxport.report.terminal import artifact_check_summary

    checks = verify(args.artifact, args.source, weights=args.weights, host=args.host,
                    trust_code=args.trust_code)
    if args.json:
        print(json.dumps({"format": "onnxport-verify/1", "targets": [{
            "target": c.target, "passed": c.passed, "directory": str(c.directory),
            "integrity_problems": c.integrity_problems, "not_rerun": c.not_rerun,
            "verification": c.verification.to_dict() if c.verification else None,
        } for c in checks]}, indent=2, default=str))
    else:
        print(artifact_check_summary(checks))
    failing = next((c for c in checks if c.integrity_problems or (
        c.verification is not None and not c.verification.passed)), None)
    if failing is None:
        return ExitCode.OK
    reason = (failing.integrity_problems[0] if failing.integrity_problems
              else failing.verification.problem)
    print(f"onnxport: error: verification failed for target {failing.target}: {reason}",
          file=sys.stderr)
    return ExitCode.VERIFICATION_FAILED


COMMAND = Command(
    name="verify", help="check an existing artifact again",
    description="Check every file of an artifact against its manifest's sha256 and size, "
    "then re-run the numerical verification against the source you name (--source), "
    "with the settings and budgets the conversion used. The source an artifact names is "
    "run only with --trust-code: an artifact is untrusted input.",
    configure=configure, run=run)
